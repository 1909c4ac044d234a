/** Events: list (type / types / created filters) and retrieve. */
import { noSuch } from "../errors.ts";
import type { Router } from "../router.ts";
import { expandAll, LIST_PARAMS, paginate, rangeFilter } from "./common.ts";

/** `invoice.*` style wildcards are allowed in `type`. */
function typeMatcher(pattern: string): (t: string) => boolean {
  if (!pattern.includes("*")) return (t) => t === pattern;
  const re = new RegExp(`^${pattern.split("*").map((s) => s.replace(/[.]/g, "\\.")).join(".*")}$`);
  return (t) => re.test(t);
}

export function registerEventRoutes(r: Router): void {
  r.add("GET", "/v1/events", ({ emu, params }) => {
    params.only([...LIST_PARAMS, "type", "types", "created", "delivery_success"]);
    const type = params.str("type");
    const types = params.strList("types");
    const created = rangeFilter(params, "created");
    const delivered = params.bool("delivery_success");
    const one = type !== undefined ? typeMatcher(type) : undefined;
    return paginate(emu, params, emu.store.eventIndex, {
      url: "/v1/events",
      kind: "evt",
      lookup: (id) => emu.store.events.get(id),
      render: (e) => structuredClone(e.body),
      filter: (e) =>
        (!one || one(e.type)) && (!types || types.includes(e.type)) &&
        (!created || created(e.created)) &&
        (delivered === undefined || (e.body.pending_webhooks === 0) === delivered),
    });
  });

  r.add("GET", "/v1/events/:id", ({ emu, params, path }) => {
    params.only([]);
    const e = emu.store.events.get(path.id);
    if (!e) throw noSuch("evt", path.id);
    return expandAll(params.expand(), structuredClone(e.body), emu);
  });
}
