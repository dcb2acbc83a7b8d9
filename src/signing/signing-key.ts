import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import type { SigningAlgorithm, SigningKeyRecord, SigningKeyState } from "../storage/types.ts";
import { MasterKeyError } from "./master-key.ts";
import { open, seal } from "./sealed-box.ts";

export type AsymmetricAlgorithm = Exclude<SigningAlgorithm, "HS256">;

/** A signing key ready for use: private half for signing, public half for verifying. */
export interface LoadedSigningKey {
  kid: string;
  alg: SigningAlgorithm;
  state: SigningKeyState;
  privateKey: KeyObject;
  /** For HS256 the secret itself (never published). */
  verifyKey: KeyObject;
  publicJwk: Record<string, unknown> | null;
  publishUntil: number | null;
}

function generatePair(alg: AsymmetricAlgorithm): { privateKey: KeyObject; publicKey: KeyObject } {
  switch (alg) {
    // 2048-bit RSA: what RFC 7518 §3.3 requires at least and what OIDC clients expect;
    // larger moduli slow every signature for little gain within a 15-minute token life.
    case "RS256":
      return generateKeyPairSync("rsa", { modulusLength: 2048 });
    case "ES256":
      return generateKeyPairSync("ec", { namedCurve: "P-256" });
    case "EdDSA":
      return generateKeyPairSync("ed25519");
  }
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url): a kid derived from the key, not guessable ahead. */
export function thumbprint(jwk: Record<string, unknown>): string {
  const members: Record<string, readonly string[]> = {
    RSA: ["e", "kty", "n"],
    EC: ["crv", "kty", "x", "y"],
    OKP: ["crv", "kty", "x"],
  };
  const names = members[String(jwk.kty)];
  if (!names) throw new TypeError(`no thumbprint for kty ${String(jwk.kty)}`);
  const canonical = JSON.stringify(Object.fromEntries(names.map((name) => [name, jwk[name]])));
  return createHash("sha256").update(canonical).digest("base64url");
}

export function newSigningKey(
  alg: AsymmetricAlgorithm,
  options: { masterKey: Buffer; state: SigningKeyState; now: number },
): SigningKeyRecord {
  const { privateKey, publicKey } = generatePair(alg);
  const exported = publicKey.export({ format: "jwk" }) as Record<string, unknown>;
  const kid = thumbprint(exported);
  const publicJwk = { ...exported, kid, alg, use: "sig" };
  const pkcs8 = privateKey.export({ format: "der", type: "pkcs8" });
  return {
    kid,
    alg,
    state: options.state,
    publicJwk: JSON.stringify(publicJwk),
    sealedPrivateKey: seal(options.masterKey, pkcs8, kid),
    createdAt: options.now,
    activatedAt: options.state === "current" ? options.now : null,
    retiredAt: null,
    publishUntil: null,
  };
}

/** Whether `masterKey` opens the record's sealed private key (the one it was sealed with). */
export function unsealsWith(record: SigningKeyRecord, masterKey: Buffer): boolean {
  try {
    open(masterKey, record.sealedPrivateKey, record.kid).fill(0);
    return true;
  } catch {
    return false;
  }
}

export function loadSigningKey(record: SigningKeyRecord, masterKey: Buffer): LoadedSigningKey {
  let der: Buffer;
  try {
    der = open(masterKey, record.sealedPrivateKey, record.kid);
  } catch {
    throw new MasterKeyError(
      `cannot unseal signing key ${record.kid}: the master key is not the one it was sealed with (check GATEHOUSE_MASTER_KEY, GATEHOUSE_MASTER_KEY_FILE or <data dir>/master.key)`,
    );
  }
  const privateKey = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  der.fill(0);
  const publicJwk = JSON.parse(record.publicJwk) as Record<string, unknown>;
  return {
    kid: record.kid,
    alg: record.alg,
    state: record.state,
    privateKey,
    verifyKey: createPublicKey(privateKey),
    publicJwk,
    publishUntil: record.publishUntil,
  };
}
