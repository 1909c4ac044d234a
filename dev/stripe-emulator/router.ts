/** Route table: `METHOD /v1/path/:param` templates to handlers. */
import type { Emulator, RequestInfo } from "./emulator.ts";
import type { JsonObject } from "./json.ts";
import type { Params } from "./params.ts";

export interface HandlerContext {
  emu: Emulator;
  params: Params;
  /** Values of the template's `:param` segments. */
  path: Record<string, string>;
  request: RequestInfo;
}

export type Handler = (ctx: HandlerContext) => JsonObject;

export interface Route {
  method: string;
  template: string;
  segments: string[];
  handler: Handler;
}

export interface MatchedRoute {
  route: Route;
  params: Record<string, string>;
}

export class Router {
  private routes: Route[] = [];

  add(method: string, template: string, handler: Handler): void {
    this.routes.push({ method, template, segments: template.split("/"), handler });
    // Literal segments win over parameters (`/v1/customers/search` before `/:id`).
    this.routes.sort((a, b) => specificity(b) - specificity(a));
  }

  match(method: string, path: string): MatchedRoute | undefined {
    const segs = path.split("/");
    outer: for (const route of this.routes) {
      if (route.method !== method || route.segments.length !== segs.length) continue;
      const params: Record<string, string> = {};
      for (let i = 0; i < segs.length; i++) {
        const want = route.segments[i];
        if (want.startsWith(":")) {
          if (!segs[i]) continue outer;
          params[want.slice(1)] = decodeURIComponent(segs[i]);
        } else if (want !== segs[i]) {
          continue outer;
        }
      }
      return { route, params };
    }
    return undefined;
  }

  /** Whether any route exists for this path under another method. */
  knowsPath(path: string): boolean {
    const segs = path.split("/");
    return this.routes.some((r) =>
      r.segments.length === segs.length &&
      r.segments.every((s, i) => s.startsWith(":") || s === segs[i])
    );
  }
}

function specificity(r: Route): number {
  return r.segments.filter((s) => !s.startsWith(":")).length;
}
