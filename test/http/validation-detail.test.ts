import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify, { type FastifyInstance } from "fastify";
import { Type } from "typebox";
import { errorHandler } from "../../src/http/problem.ts";
import { Scopes } from "../../src/http/schemas.ts";

/**
 * How validation problems are worded, on shapes of schema the API may grow into: the
 * answer's wording comes from src/http/validation-detail.ts, whatever the route.
 */
describe("validation problems, worded", () => {
  let app: FastifyInstance;
  let url: string;
  before(async () => {
    app = Fastify({
      ajv: { customOptions: { allErrors: true, coerceTypes: false } },
    }).withTypeProvider<TypeBoxTypeProvider>();
    app.setErrorHandler(errorHandler);
    const body = Type.Object(
      {
        maybe: Type.Optional(Type.Union([Type.Literal("a"), Type.Literal("b"), Type.Null()])),
        list: Type.Optional(Type.Array(Type.Union([Type.Literal("x"), Type.Literal("y")]))),
      },
      { additionalProperties: false },
    );
    app.post("/choices", { schema: { body } }, async () => ({ ok: true }));
    app.post("/list", { schema: { body: Type.Array(Type.String()) } }, async () => ({ ok: true }));
    app.post("/scopes", { schema: { body: Scopes } }, async () => ({ ok: true }));
    url = await app.listen({ port: 0, host: "127.0.0.1" });
  });
  after(() => app.close());

  const post = async (path: string, body: string) => {
    const response = await fetch(`${url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    return { status: response.status, body: (await response.json()) as { detail: string; errors: unknown[] } };
  };

  test("each element of an array of choices is named with its index and the values", async () => {
    const r = await post("/choices", JSON.stringify({ list: ["x", "z", "y", "w"] }));
    assert.equal(r.status, 400);
    assert.deepEqual(r.body.errors, [
      { path: "body/list/1", message: 'must be one of "x", "y"' },
      { path: "body/list/3", message: 'must be one of "x", "y"' },
    ]);
  });

  test("a union with a branch that is not a fixed value keeps Ajv's own problems, which name that branch", async () => {
    const r = await post("/choices", JSON.stringify({ maybe: "c" }));
    assert.equal(r.status, 400);
    assert.match(r.body.detail, /body\/maybe: must be null/);
    assert.doesNotMatch(r.body.detail, /must be one of/);
  });

  test("a body that must be an array is not told to be an object", async () => {
    const r = await post("/list", JSON.stringify({ not: "a list" }));
    assert.equal(r.status, 400);
    assert.equal(r.body.detail, "body: must be array");
  });

  test("a scope name that does not match its pattern is told what a scope may hold, not the regular expression", async () => {
    const r = await post("/scopes", JSON.stringify(["fine", "has space"]));
    assert.equal(r.status, 400);
    assert.equal(r.body.detail, "body/1: must be printable ASCII without spaces, quotes or backslashes");
  });
});
