import assert from "node:assert/strict";
import { HttpError, json, readCappedText, readJsonObject, withCors } from "./http.ts";

const origin = (res: Response) => res.headers.get("access-control-allow-origin");

Deno.test("withCors() answers preflights without running the handler", async () => {
  let ran = false;
  const handler = withCors("t", () => {
    ran = true;
    return Promise.resolve(json({}));
  });
  const res = await handler(new Request("http://x/", { method: "OPTIONS" }));
  await res.body?.cancel();
  assert.equal(res.status, 200);
  assert.equal(ran, false);
  assert.equal(origin(res), "*");
  assert.equal(
    res.headers.get("access-control-allow-headers"),
    "authorization, x-client-info, apikey, content-type",
  );
});

Deno.test("withCors() turns errors into JSON with CORS headers, hiding unexpected ones", async () => {
  const known = await withCors("t", () => {
    throw new HttpError(400, "invalid_request", "tenant is required", "tenant");
  })(new Request("http://x/", { method: "POST" }));
  assert.equal(known.status, 400);
  assert.equal(origin(known), "*");
  assert.deepEqual(await known.json(), {
    error: { code: "invalid_request", message: "tenant is required", field: "tenant" },
  });

  const originalError = console.error;
  console.error = () => {};
  try {
    const unknown = await withCors("t", () => {
      throw new Error("password=hunter2 in a connection string");
    })(new Request("http://x/", { method: "POST" }));
    assert.equal(unknown.status, 500);
    assert.equal(origin(unknown), "*");
    const text = await unknown.text();
    assert.ok(!text.includes("hunter2"));
  } finally {
    console.error = originalError;
  }
});

Deno.test("readJsonObject() accepts only a JSON object", async () => {
  const read = (body: string) => readJsonObject(new Request("http://x/", { method: "POST", body }));
  assert.deepEqual(await read('{"a":1}'), { a: 1 });
  for (const body of ["", "nope", "[]", "1", "null"]) {
    await assert.rejects(read(body), (e) => e instanceof HttpError && e.field === "body");
  }
});

Deno.test("readCappedText refuses a body over the cap, declared or streamed", async () => {
  const declared = new Request("http://x/", { method: "POST", body: "x".repeat(11) });
  await assert.rejects(readCappedText(declared, 10), (err: HttpError) => err.status === 413);
  const chunks = ["12345", "67890", "1"];
  const streamed = new Request("http://x/", {
    method: "POST",
    body: new ReadableStream<Uint8Array>({
      pull(controller) {
        const next = chunks.shift();
        if (next === undefined) controller.close();
        else controller.enqueue(new TextEncoder().encode(next));
      },
    }),
  });
  assert.equal(streamed.headers.get("content-length"), null);
  await assert.rejects(readCappedText(streamed, 10), (err: HttpError) => err.status === 413);
  const fits = new Request("http://x/", { method: "POST", body: "héllo" });
  assert.equal(await readCappedText(fits, 10), "héllo");
});
