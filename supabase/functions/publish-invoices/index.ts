import { createPublishApp } from "./handler.ts";

Deno.serve(createPublishApp(Deno.env).fetch);
