// Stripe's webhook endpoint; see handler.ts.
import { createApp } from "./handler.ts";

Deno.serve(createApp(Deno.env).fetch);
