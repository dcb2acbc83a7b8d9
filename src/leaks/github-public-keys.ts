import { createPublicKey, type KeyObject, verify } from "node:crypto";

/** The shape of GitHub's secret-scanning public-keys endpoint. */
export interface GithubPublicKeysDocument {
  public_keys: Array<{ key_identifier: string; key: string; is_current?: boolean }>;
}

/**
 * Reads GitHub's public-keys document into ECDSA P-256 keys by identifier. Entries that
 * are not usable P-256 public keys are skipped; a document of the wrong shape throws.
 */
export function parseGithubPublicKeys(json: unknown): Map<string, KeyObject> {
  const keys = new Map<string, KeyObject>();
  if (typeof json !== "object" || json === null || !Array.isArray((json as { public_keys?: unknown }).public_keys)) {
    throw new TypeError("expected an object with a public_keys array");
  }
  for (const entry of (json as { public_keys: unknown[] }).public_keys) {
    if (typeof entry !== "object" || entry === null) continue;
    const { key_identifier: id, key } = entry as Record<string, unknown>;
    if (typeof id !== "string" || typeof key !== "string") continue;
    let publicKey: KeyObject;
    try {
      publicKey = createPublicKey(key);
    } catch {
      continue;
    }
    // The partner protocol signs with ECDSA P-256; refuse anything else outright.
    if (publicKey.asymmetricKeyType !== "ec" || publicKey.asymmetricKeyDetails?.namedCurve !== "prime256v1") continue;
    keys.set(id, publicKey);
  }
  return keys;
}

/**
 * GitHub's signing keys, from configuration (offline) or from GitHub's endpoint. An
 * unknown identifier triggers a refetch. Fetches run one at a time and at most once a
 * minute, whatever their outcome, so a key rotation at GitHub is picked up without
 * letting anyone make us fetch on every request, even while GitHub is unreachable.
 */
export class GithubPublicKeys {
  private keys: Map<string, KeyObject> | null = null;
  private lastFetch: number | null = null;
  private inFlight: Promise<void> | null = null;
  private readonly url: string;
  private readonly staticJson: string | null;
  private readonly fetchImpl: typeof fetch;
  private readonly now: () => number;

  constructor(options: { url: string; json: string | null; fetch?: typeof fetch; now?: () => number }) {
    this.url = options.url;
    this.staticJson = options.json;
    this.fetchImpl = options.fetch ?? fetch;
    this.now = options.now ?? Date.now;
    if (this.staticJson !== null) this.keys = parseGithubPublicKeys(JSON.parse(this.staticJson));
  }

  private refresh(): Promise<void> {
    if (this.staticJson !== null) return Promise.resolve();
    if (this.inFlight) return this.inFlight;
    if (this.lastFetch !== null && this.now() - this.lastFetch < 60_000) {
      if (this.keys) return Promise.resolve();
      return Promise.reject(new Error("GitHub public keys: the last fetch failed; the next try is within a minute"));
    }
    this.lastFetch = this.now();
    this.inFlight = this.fetchKeys().finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  private async fetchKeys(): Promise<void> {
    const response = await this.fetchImpl(this.url, {
      headers: { accept: "application/json" },
      signal: AbortSignal.timeout(5000),
    });
    if (!response.ok) throw new Error(`GitHub public keys: HTTP ${response.status}`);
    this.keys = parseGithubPublicKeys(await response.json());
  }

  async find(identifier: string): Promise<KeyObject | null> {
    if (!this.keys?.has(identifier)) await this.refresh();
    return this.keys?.get(identifier) ?? null;
  }

  /** Verifies GitHub's base64 DER ECDSA-SHA256 signature over the raw request body. */
  async verify(identifier: string, signatureBase64: string, body: Buffer): Promise<boolean> {
    const key = await this.find(identifier);
    if (!key) return false;
    const signature = Buffer.from(signatureBase64, "base64");
    if (signature.length === 0 || signature.length > 80) return false;
    try {
      return verify("sha256", body, key, signature);
    } catch {
      return false;
    }
  }
}
