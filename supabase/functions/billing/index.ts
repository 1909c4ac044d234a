// The dashboard's billing operations; see handler.ts.
import { createApp } from "./handler.ts";

Deno.serve(createApp(Deno.env).fetch);
