import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import { ValidationError } from "../../errors/gatehouse-error.ts";
import type { Gatehouse } from "../../gatehouse.ts";
import { MIN_LIFETIME_SECONDS, NAME_MAX_CHARS, OWNER_ID_MAX_CHARS } from "../../keys/key-rules.ts";
import { isPermission, PERMISSIONS } from "../../keys/permissions.ts";
import type { ApiKeyRecord } from "../../storage/types.ts";
import { type FailedAuthGuard, type Principal, requirePermissions } from "../authenticate.ts";
import {
  AllowedAddresses,
  Cursor,
  KeyId,
  KeyView,
  keyView,
  LimitParam,
  Metadata,
  matchesSchema,
  Permissions,
  RateLimitBody,
  Scopes,
} from "../schemas.ts";

const Name = Type.String({ minLength: 1, maxLength: NAME_MAX_CHARS });
const OwnerId = Type.String({ minLength: 1, maxLength: OWNER_ID_MAX_CHARS });
const Lifetime = Type.Integer({ minimum: MIN_LIFETIME_SECONDS });
const IdParams = Type.Object({ id: KeyId });

const CreateBody = Type.Object(
  {
    name: Name,
    scopes: Scopes,
    permissions: Type.Optional(Permissions),
    expiresInSeconds: Type.Optional(Type.Union([Lifetime, Type.Null()])),
    rateLimit: Type.Optional(RateLimitBody),
    ownerId: Type.Optional(OwnerId),
    metadata: Type.Optional(Metadata),
    allowedAddresses: Type.Optional(AllowedAddresses),
  },
  { additionalProperties: false },
);

const PatchBody = Type.Object(
  {
    name: Type.Optional(Name),
    scopes: Type.Optional(Scopes),
    permissions: Type.Optional(Permissions),
    ownerId: Type.Optional(Type.Union([OwnerId, Type.Null()])),
    metadata: Type.Optional(Type.Union([Metadata, Type.Null()])),
    rateLimit: Type.Optional(Type.Union([RateLimitBody, Type.Null()])),
    allowedAddresses: Type.Optional(Type.Union([AllowedAddresses, Type.Null()])),
  },
  { additionalProperties: false, minProperties: 1 },
);

const CreatedView = Type.Object({ key: Type.String(), ...KeyView.properties });

const RevokeBody = Type.Object(
  { reason: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })) },
  { additionalProperties: false },
);

const MAX_METADATA_BYTES = 4096;
function checkMetadata(metadata: unknown): void {
  if (metadata === undefined || metadata === null) return;
  let json: string;
  let outOfRange = false;
  try {
    // A number JSON parsed to ±Infinity (1e400) would be stored as null: refused instead.
    json = JSON.stringify(metadata, (_key, value: unknown) => {
      if (typeof value === "number" && !Number.isFinite(value)) outOfRange = true;
      return value;
    });
  } catch {
    // A body within the size limit can nest deeply enough to overflow the stack.
    throw new ValidationError("metadata is nested too deeply.");
  }
  if (outOfRange) throw new ValidationError("metadata numbers must be finite (within ±1.8e308).");
  if (Buffer.byteLength(json) > MAX_METADATA_BYTES) {
    throw new ValidationError(`metadata may be at most ${MAX_METADATA_BYTES} bytes of JSON.`);
  }
  // JSON.stringify writes a lone surrogate and U+0000 as \u escapes (and a backslash of
  // the text as two): storage would alter the one and PostgreSQL refuses the other.
  if (UNSTORABLE_ESCAPE.test(json)) {
    throw new ValidationError("metadata text must be valid Unicode without U+0000 (no lone surrogates).");
  }
}

/** A \u0000 or lone-surrogate escape not itself escaped (preceded by an even number of backslashes). */
const UNSTORABLE_ESCAPE = /(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f][0-9a-f]{2})/i;

function checkPermissionNames(permissions: readonly string[] | undefined): void {
  // Unknown names are refused rather than stored: a typo must not pass silently.
  const unknown = (permissions ?? []).filter((p) => !isPermission(p));
  if (unknown.length > 0) {
    throw new ValidationError(`Unknown permission(s): ${unknown.join(", ")} (known: ${PERMISSIONS.join(", ")}).`);
  }
}

function caller(principal: Principal | null) {
  // requirePermissions ran first and set it; a missing principal is a wiring bug.
  if (!principal) throw new Error("route reached without an authenticated principal");
  return { context: principal.context, permissions: principal.key.permissions };
}

export function keyRoutes(gatehouse: Gatehouse, guard: FailedAuthGuard): FastifyPluginAsyncTypebox {
  return async (app) => {
    const read = requirePermissions(gatehouse, guard, ["keys:read"]);
    const write = requirePermissions(gatehouse, guard, ["keys:write"]);
    /** The record with this node's latest use of it not yet written to storage. */
    const withUnwrittenUse = (record: ApiKeyRecord): ApiKeyRecord => {
      const unwritten = gatehouse.usage.lastUseNotWritten(record.id);
      return unwritten !== null && unwritten > (record.lastUsedAt ?? 0) ? { ...record, lastUsedAt: unwritten } : record;
    };

    app.post(
      "/v1/keys",
      { preValidation: write, schema: { body: CreateBody, response: { 201: CreatedView } } },
      async (request, reply) => {
        checkMetadata(request.body.metadata);
        checkPermissionNames(request.body.permissions);
        const { record, key } = await gatehouse.keys.create(
          {
            name: request.body.name,
            scopes: request.body.scopes,
            ...(request.body.permissions ? { permissions: request.body.permissions } : {}),
            ...(request.body.expiresInSeconds !== undefined ? { expiresInSeconds: request.body.expiresInSeconds } : {}),
            ...(request.body.rateLimit ? { rateLimit: request.body.rateLimit } : {}),
            ...(request.body.ownerId ? { ownerId: request.body.ownerId } : {}),
            ...(request.body.metadata ? { metadata: request.body.metadata } : {}),
            ...(request.body.allowedAddresses ? { allowedAddresses: request.body.allowedAddresses } : {}),
          },
          caller(request.principal),
        );
        reply.code(201).header("location", `/v1/keys/${record.id}`);
        return { key, ...keyView(record, gatehouse.clock()) };
      },
    );

    app.get(
      "/v1/keys",
      {
        preValidation: read,
        schema: {
          querystring: Type.Object(
            { limit: Type.Optional(LimitParam), cursor: Type.Optional(Cursor), ownerId: Type.Optional(OwnerId) },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Object({ data: Type.Array(KeyView), nextCursor: Type.Union([Type.String(), Type.Null()]) }),
          },
        },
      },
      async (request) => {
        const limit = Number(request.query.limit ?? 50);
        const records = await gatehouse.keys.list({
          limit: limit + 1,
          ...(request.query.cursor ? { before: request.query.cursor } : {}),
          ...(request.query.ownerId ? { ownerId: request.query.ownerId } : {}),
        });
        const page = records.slice(0, limit);
        const now = gatehouse.clock();
        return {
          data: page.map((record) => keyView(withUnwrittenUse(record), now)),
          nextCursor: records.length > limit ? (page.at(-1)?.id ?? null) : null,
        };
      },
    );

    app.get(
      "/v1/keys/:id",
      { preValidation: read, schema: { params: IdParams, response: { 200: KeyView } } },
      async (request) => keyView(withUnwrittenUse(await gatehouse.keys.get(request.params.id)), gatehouse.clock()),
    );

    app.patch(
      "/v1/keys/:id",
      { preValidation: write, schema: { params: IdParams, body: PatchBody, response: { 200: KeyView } } },
      async (request) => {
        checkMetadata(request.body.metadata);
        checkPermissionNames(request.body.permissions);
        const record = await gatehouse.keys.update(request.params.id, request.body, caller(request.principal));
        return keyView(withUnwrittenUse(record), gatehouse.clock());
      },
    );

    app.post(
      "/v1/keys/:id/rotate",
      {
        preValidation: write,
        schema: {
          params: IdParams,
          body: Type.Object(
            {
              gracePeriodSeconds: Type.Integer({ minimum: 0 }),
              expiresInSeconds: Type.Optional(Type.Union([Lifetime, Type.Null()])),
            },
            { additionalProperties: false },
          ),
          response: {
            201: Type.Object({
              ...CreatedView.properties,
              previous: Type.Object({ id: Type.String(), expiresAt: Type.Union([Type.String(), Type.Null()]) }),
            }),
          },
        },
      },
      async (request, reply) => {
        const rotated = await gatehouse.keys.rotate(
          request.params.id,
          {
            gracePeriodSeconds: request.body.gracePeriodSeconds,
            ...(request.body.expiresInSeconds !== undefined ? { expiresInSeconds: request.body.expiresInSeconds } : {}),
          },
          caller(request.principal),
        );
        const previousEnd = rotated.previous.revokedAt ?? rotated.previous.expiresAt;
        reply.code(201).header("location", `/v1/keys/${rotated.record.id}`);
        return {
          key: rotated.key,
          ...keyView(rotated.record, gatehouse.clock()),
          previous: {
            id: rotated.previous.id,
            expiresAt: previousEnd === null ? null : new Date(previousEnd).toISOString(),
          },
        };
      },
    );

    // The body is optional here ({ reason }), so it is checked by hand: a route body
    // schema would refuse a request that has none.
    app.post(
      "/v1/keys/:id/revoke",
      { preValidation: write, schema: { params: IdParams, response: { 200: KeyView } } },
      async (request) => {
        const body = request.body ?? {};
        if (!matchesSchema(request, RevokeBody, body))
          throw new ValidationError('The body, if any, must be {"reason": "<1–200 characters>"}.');
        const record = await gatehouse.keys.revoke(
          request.params.id,
          body.reason ?? "revoked by API",
          caller(request.principal),
        );
        return keyView(withUnwrittenUse(record), gatehouse.clock());
      },
    );
  };
}
