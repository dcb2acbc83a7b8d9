/**
 * The SDK as another project gets it (sdk/README.md, "Install"): `npm pack ./sdk` in the
 * checkout (its prepack builds sdk/dist: JavaScript and .d.ts), the tarball installed into
 * a throwaway project, then run by plain node and type-checked by a strict consumer.
 *
 * Offline: the throwaway project gets a package-lock.json cut from the repository's own (the
 * tarball, fastify, @types/node and what they need, at the versions `npm ci` just put in
 * npm's cache), so `npm ci --prefer-offline` installs them from the cache. Its fastify is a
 * copy of its own, not the checkout's: the SDK's Fastify types must come from the consumer.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, sep } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const TSC = join(ROOT, "node_modules", "typescript", "bin", "tsc");
const run = promisify(execFile);

interface LockEntry {
  version?: string;
  integrity?: string;
  link?: boolean;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  dev?: boolean;
  devOptional?: boolean;
  peer?: boolean;
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}

/** Where node (and npm's lockfile) finds `name` for the package at `from`: its own node_modules, then its parents'. */
function locate(packages: Record<string, LockEntry>, from: string, name: string): string | undefined {
  for (let base = from; ; base = base.slice(0, base.lastIndexOf("/node_modules/"))) {
    const nested = `${base}/node_modules/${name}`;
    if (packages[nested]) return nested;
    if (!base.includes("/node_modules/")) break;
  }
  return packages[`node_modules/${name}`] ? `node_modules/${name}` : undefined;
}

/** The lockfile entries of `names` and everything they need, as the repository's lockfile has them. */
function lockedTree(packages: Record<string, LockEntry>, names: string[]): Record<string, LockEntry> {
  const tree: Record<string, LockEntry> = {};
  const pending = names.map((name) => `node_modules/${name}`);
  for (let path = pending.pop(); path !== undefined; path = pending.pop()) {
    if (tree[path]) continue;
    const entry = packages[path];
    if (!entry?.version || !entry.integrity || entry.link)
      throw new Error(`${path}: not a registry package in package-lock.json`);
    const { dev: _dev, devOptional: _devOptional, peer: _peer, ...kept } = entry;
    tree[path] = kept;
    const optional = new Set(Object.keys(entry.optionalDependencies ?? {}));
    for (const [name, meta] of Object.entries(entry.peerDependenciesMeta ?? {})) if (meta.optional) optional.add(name);
    const needed = { ...entry.dependencies, ...entry.optionalDependencies, ...entry.peerDependencies };
    for (const name of Object.keys(needed)) {
      const found = locate(packages, path, name);
      if (found) pending.push(found);
      else if (!optional.has(name)) throw new Error(`${path} needs ${name}, which package-lock.json lacks`);
    }
  }
  return tree;
}

/** The npm that runs these tests when there is one (`npm test`), else the one on PATH. */
function npmCommand(): [string, string[]] {
  const execPath = process.env.npm_execpath;
  return execPath && basename(execPath) === "npm-cli.js" ? [process.execPath, [execPath]] : ["npm", []];
}

async function npm(cwd: string, args: string[]): Promise<string> {
  const [command, prefix] = npmCommand();
  // npm run-script's own settings (`npm test` from the repository root) must not reach the
  // throwaway project's npm.
  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (/^npm_(config_((local_)?prefix|call)$|package_|lifecycle_|command$)/.test(name)) delete env[name];
  }
  const { stdout } = await run(command, [...prefix, ...args], { cwd, env, timeout: 60_000, maxBuffer: 16 << 20 });
  return stdout;
}

/** Run at run time with plain node: no TypeScript anywhere (type stripping is off). */
const RUN_MJS = `
import { createKeyVerifier, createTokenVerifier, guard, guardToken } from "@gatehouse/sdk";
import { gatehousePlugin, requireKey, requireToken } from "@gatehouse/sdk/fastify";
import Fastify from "fastify";

const verifier = createKeyVerifier({ baseUrl: "http://127.0.0.1:9", serviceKey: "unused" });
const tokenVerifier = createTokenVerifier({ issuer: "http://127.0.0.1:9", audience: "http://127.0.0.1:9" });
const app = Fastify();
await app.register(gatehousePlugin, { verifier, tokenVerifier });
app.get("/key", { preHandler: requireKey({ scopes: ["payments:read"] }) }, async () => "guarded");
app.get("/token", { preHandler: requireToken() }, async () => "guarded");
const answer = (response) => [response.statusCode, response.headers["www-authenticate"], response.json().code];
const refused = await guardToken({ headers: { authorization: "Bearer not-a-jwt" }, url: "/" }, { verifier: tokenVerifier });
console.log(JSON.stringify({
  key: answer(await app.inject("/key")),
  token: answer(await app.inject("/token")),
  guardToken: [refused.ok, refused.status, refused.body?.code],
  guard: typeof guard,
}));
`;

/** Type-checked only: the README's uses, under a strict consumer tsconfig without any flag for the SDK. */
const APP_TS = `
import { createServer } from "node:http";
import {
  createKeyVerifier,
  createTokenVerifier,
  guard,
  guardToken,
  redactedRequest,
  type TokenGuardResult,
  type VerifiedKey,
  type VerifiedToken,
} from "@gatehouse/sdk";
import { gatehousePlugin, requireKey, requireToken } from "@gatehouse/sdk/fastify";
import Fastify from "fastify";

const { GATEHOUSE_URL, GATEHOUSE_SERVICE_KEY } = process.env;
if (!GATEHOUSE_URL || !GATEHOUSE_SERVICE_KEY) throw new Error("Set GATEHOUSE_URL and GATEHOUSE_SERVICE_KEY");
const verifier = createKeyVerifier({ baseUrl: GATEHOUSE_URL, serviceKey: GATEHOUSE_SERVICE_KEY, cacheTtlMs: 5000 });
const tokenVerifier = createTokenVerifier({ issuer: GATEHOUSE_URL, audience: GATEHOUSE_URL, algorithms: ["ES256"] });

const app = Fastify({ logger: { serializers: { req: redactedRequest } } });
await app.register(gatehousePlugin, { verifier, tokenVerifier, realm: "payments" });
app.get("/payments", { preHandler: requireKey({ scopes: ["payments:read"] }) }, async (request) => {
  const key: VerifiedKey = request.gatehouseKey!;
  return { ownerId: key.ownerId, scopes: key.scopes, realm: app.gatehouseGuard.realm };
});
app.get("/me", { preHandler: requireToken({ scopes: ["payments:read"] }) }, async (request) => {
  const token: VerifiedToken | null = request.gatehouseToken;
  // @ts-expect-error null on routes requireKey does not guard: the decorator's type is the SDK's, not any
  return { sub: token?.sub, ownerId: request.gatehouseKey.ownerId };
});
await app.listen({ port: 0 });

createServer(async (req, res) => {
  if (req.url?.startsWith("/token")) {
    const result: TokenGuardResult = await guardToken(req, { verifier: tokenVerifier, scopes: ["payments:read"] });
    if (!result.ok) {
      if (result.cause) console.warn("gatehouse: no verdict", result.cause.code);
      return res.writeHead(result.status, result.headers).end(JSON.stringify(result.body));
    }
    return res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ sub: result.token.sub }));
  }
  const result = await guard(req, { verifier, scopes: ["payments:read"] });
  if (!result.ok) {
    if (result.cause) console.warn("gatehouse: no verdict", result.cause.code);
    return res.writeHead(result.status, result.headers).end(JSON.stringify(result.body));
  }
  res.writeHead(200, { ...result.headers, "content-type": "application/json" });
  return res.end(JSON.stringify({ ownerId: result.key.ownerId, expiresAt: result.key.expiresAt }));
}).listen(0);
`;

const TSCONFIG = {
  compilerOptions: {
    target: "es2022",
    module: "nodenext",
    moduleResolution: "nodenext",
    types: ["node"],
    strict: true,
    noPropertyAccessFromIndexSignature: true,
    noUncheckedIndexedAccess: true,
    exactOptionalPropertyTypes: true,
    verbatimModuleSyntax: true,
    // The SDK's declarations are checked too, under these flags (not only the app).
    skipLibCheck: false,
    noEmit: true,
  },
  files: ["app.ts"],
};

describe("the packed SDK, installed from its tarball into another project", { timeout: 180_000 }, () => {
  let dir: string;
  let tarball: string;
  before(async () => {
    dir = realpathSync(mkdtempSync(join(tmpdir(), "gatehouse-sdk-consumer-")));
    // What the README tells a user to run (prepack builds sdk/dist first).
    const packed = JSON.parse(await npm(ROOT, ["pack", "./sdk", "--json", "--pack-destination", dir])) as {
      filename: string;
      files: { path: string }[];
    }[];
    const [pack] = packed;
    assert.ok(pack, "npm pack reported no tarball");
    tarball = pack.filename;
    const files = pack.files.map((file) => file.path);
    for (const file of ["dist/index.js", "dist/index.d.ts", "dist/fastify.js", "dist/fastify.d.ts", "README.md"]) {
      assert.ok(files.includes(file), `${file} missing from the tarball: ${files.join(", ")}`);
    }
    assert.deepEqual(
      files.filter((file) => file.endsWith(".ts") && !file.endsWith(".d.ts")),
      [],
      "the tarball ships TypeScript sources",
    );

    const root = readJson<{ dependencies: Record<string, string>; devDependencies: Record<string, string> }>(
      join(ROOT, "package.json"),
    );
    const sdk = readJson<LockEntry & { name: string; license: string; engines: Record<string, string> }>(
      join(ROOT, "sdk", "package.json"),
    );
    const { packages } = readJson<{ packages: Record<string, LockEntry> }>(join(ROOT, "package-lock.json"));
    const dependencies = {
      "@gatehouse/sdk": `file:${tarball}`,
      "@types/node": root.devDependencies["@types/node"] ?? "*",
      fastify: root.dependencies.fastify ?? "*",
    };
    const integrity = `sha512-${createHash("sha512")
      .update(readFileSync(join(dir, tarball)))
      .digest("base64")}`;
    const lock = {
      name: "sdk-consumer",
      lockfileVersion: 3,
      requires: true,
      packages: {
        "": { name: "sdk-consumer", dependencies },
        "node_modules/@gatehouse/sdk": {
          version: sdk.version,
          resolved: `file:${tarball}`,
          integrity,
          license: sdk.license,
          dependencies: sdk.dependencies,
          engines: sdk.engines,
          peerDependencies: sdk.peerDependencies,
          peerDependenciesMeta: sdk.peerDependenciesMeta,
        },
        ...lockedTree(packages, [...Object.keys(sdk.dependencies ?? {}), "fastify", "@types/node"]),
      },
    };
    writeFileSync(
      join(dir, "package.json"),
      JSON.stringify({ name: "sdk-consumer", private: true, type: "module", dependencies }),
    );
    writeFileSync(join(dir, "package-lock.json"), JSON.stringify(lock, null, 2));
    writeFileSync(join(dir, "run.mjs"), RUN_MJS);
    writeFileSync(join(dir, "app.ts"), APP_TS);
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify(TSCONFIG, null, 2));
    await npm(dir, ["ci", "--prefer-offline", "--no-audit", "--no-fund"]);
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("plain node runs an app importing @gatehouse/sdk and @gatehouse/sdk/fastify", async () => {
    const { stdout } = await run(process.execPath, ["--no-experimental-strip-types", "run.mjs"], {
      cwd: dir,
      timeout: 30_000,
    });
    assert.deepEqual(JSON.parse(stdout), {
      key: [401, 'Bearer realm="api"', "UNAUTHENTICATED"],
      token: [401, 'Bearer realm="api"', "UNAUTHENTICATED"],
      guardToken: [false, 401, "INVALID_TOKEN"],
      guard: "function",
    });
  });

  test("a strict nodenext app type-checks against the shipped declarations and its own fastify", async () => {
    const listed = await run(process.execPath, [TSC, "-p", "tsconfig.json", "--listFiles"], {
      cwd: dir,
      timeout: 60_000,
    }).catch((error: { stdout?: string }) => {
      const errors = error.stdout?.split("\n").filter((line) => line.includes("error TS"));
      return assert.fail(`tsc: ${errors?.length ? errors.join("\n") : error}`);
    });
    const files = listed.stdout.split("\n").filter((line) => line.endsWith(".ts"));
    const installed = join(dir, "node_modules") + sep;
    assert.ok(files.includes(`${installed}@gatehouse${sep}sdk${sep}dist${sep}fastify.d.ts`), listed.stdout);
    assert.ok(files.includes(`${installed}fastify${sep}fastify.d.ts`), listed.stdout);
    // Nothing from the checkout but the compiler's own lib files: no SDK source, no fastify of the repository's.
    const compiler = [join(ROOT, "node_modules", "typescript") + sep, join(ROOT, "node_modules", "@typescript") + sep];
    assert.deepEqual(
      files.filter((file) => file.startsWith(ROOT) && !compiler.some((prefix) => file.startsWith(prefix))),
      [],
    );
  });
});
