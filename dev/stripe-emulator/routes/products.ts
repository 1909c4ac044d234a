/** Products: create (incl. a chosen id), retrieve, update, list; and `price_data` lookups. */
import type { Emulator, RequestInfo } from "../emulator.ts";
import { ApiError, noSuch } from "../errors.ts";
import { newId } from "../ids.ts";
import type { JsonObject } from "../json.ts";
import type { ProductRecord } from "../model.ts";
import { applyMetadata, type Params } from "../params.ts";
import { renderProduct } from "../render.ts";
import type { Router } from "../router.ts";
import { expandAll, LIST_PARAMS, paginate, rangeFilter } from "./common.ts";

const ID = /^[A-Za-z0-9_-]{1,255}$/;

/** Reads `name`, `description`, `metadata` into a new, not yet stored product. */
export function draftProduct(
  emu: Emulator,
  p: Params,
  origin: ProductRecord["origin"],
  id = newId("prod"),
): ProductRecord {
  const created = emu.clock.created();
  return {
    id,
    created,
    seq: emu.store.nextSeq(),
    name: p.str("name", { required: true, max: 250 })!,
    description: p.nullableStr("description", 40_000) ?? null,
    active: p.bool("active") ?? true,
    metadata: applyMetadata({}, p.metadata(), p.name("metadata")),
    updated: created,
    origin,
  };
}

/** Stores a product and emits `product.created`. */
export function saveProduct(emu: Emulator, product: ProductRecord, request: RequestInfo): void {
  emu.store.addProduct(product);
  emu.emit("product.created", renderProduct(product), request);
}

/** A product a body parameter names; a missing one is a 400 naming that parameter. */
export function getProduct(emu: Emulator, id: string, param = "id"): ProductRecord {
  const product = emu.store.products.get(id);
  if (!product) throw noSuch("prod", id, param);
  return product;
}

export function registerProductRoutes(r: Router): void {
  r.add("POST", "/v1/products", ({ emu, params, request }) => {
    params.only(["id", "name", "description", "active", "metadata"]);
    const id = params.str("id", { nonEmpty: true });
    if (id !== undefined) {
      if (!ID.test(id)) {
        throw new ApiError({
          status: 400,
          type: "invalid_request_error",
          param: "id",
          message: "Invalid id: use at most 255 letters, digits, '_' or '-'.",
          validation: true,
        });
      }
      if (emu.store.products.has(id)) {
        throw new ApiError({
          status: 400,
          type: "invalid_request_error",
          code: "resource_already_exists",
          param: "id",
          message: `Product already exists: '${id}'`,
        });
      }
    }
    const product = draftProduct(emu, params, "api", id);
    saveProduct(emu, product, request);
    return expandAll(params.expand(), renderProduct(product), emu);
  });

  r.add("GET", "/v1/products/:id", ({ emu, params, path }) => {
    params.only([]);
    return expandAll(params.expand(), renderProduct(getProduct(emu, path.id)), emu);
  });

  r.add("POST", "/v1/products/:id", ({ emu, params, path, request }) => {
    params.only(["name", "description", "active", "metadata"]);
    const product = getProduct(emu, path.id);
    const before = renderProduct(product);
    const name = params.str("name", { nonEmpty: true, max: 250 });
    const description = params.nullableStr("description", 40_000);
    const active = params.bool("active");
    const metadata = applyMetadata(product.metadata, params.metadata());
    if (name !== undefined) product.name = name;
    if (description !== undefined) product.description = description;
    if (active !== undefined) product.active = active;
    product.metadata = metadata;
    product.updated = emu.clock.created();
    const after = renderProduct(product);
    const previous: JsonObject = {};
    for (const key of ["name", "description", "active", "metadata"]) {
      if (JSON.stringify(before[key]) !== JSON.stringify(after[key])) previous[key] = before[key];
    }
    if (Object.keys(previous).length > 0) emu.emit("product.updated", after, request, previous);
    return expandAll(params.expand(), after, emu);
  });

  r.add("GET", "/v1/products", ({ emu, params }) => {
    params.only([...LIST_PARAMS, "active", "created", "ids"]);
    const active = params.bool("active");
    const created = rangeFilter(params, "created");
    const ids = params.strList("ids");
    return paginate(emu, params, emu.store.productIndex, {
      url: "/v1/products",
      kind: "prod",
      lookup: (id) => emu.store.products.get(id),
      render: renderProduct,
      filter: (p) =>
        (active === undefined || p.active === active) && (!created || created(p.created)) &&
        (ids === undefined || ids.includes(p.id)),
    });
  });
}
