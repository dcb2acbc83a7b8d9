import { createHmac, createSecretKey } from "node:crypto";
import { hs256KeyId } from "../../sdk/src/token-signature.ts";
import { type ActorContext, auditEvent } from "../audit/context.ts";
import type { AuthConfig } from "../config/auth-config.ts";
import type { Clock } from "../lib/clock.ts";
import type { SigningAlgorithm, SigningKeyRecord, SigningKeyState, Storage } from "../storage/types.ts";
import type { LoadMasterKeyOptions } from "./master-key.ts";
import { type LoadedSigningKey, loadSigningKey, newSigningKey, unsealsWith } from "./signing-key.ts";

/** Tolerance for verifiers whose clocks run behind, added to how long retired keys stay published. */
const PUBLISH_MARGIN_MS = 5 * 60_000;
/** How stale the cached key set may get before a signer looks again (another node may have rotated). */
const RELOAD_AFTER_MS = 30_000;
/**
 * How long verifiers may cache the JWKS (its Cache-Control max-age). A next key published
 * for less than this may be missing from a verifier's cached copy, which would refuse the
 * tokens it signs until it refetches: a manual rotation waits this long after the last.
 */
export const JWKS_MAX_AGE_SECONDS = 300;
/** Floor between reloads caused by an unknown kid, so junk kids cannot hammer storage. */
const UNKNOWN_KID_FLOOR_MS = 5_000;

/** Actor of scheduled work (first keys, automatic rotation) in the audit log. */
export const SYSTEM_ACTOR: ActorContext = { actor: "system", ip: null, userAgent: null, requestId: null };

export interface Jwks {
  keys: Array<Record<string, unknown>>;
}

/**
 * The signing keys. Asymmetric keys live in storage, private halves sealed with the
 * master key; each is published (JWKS) from the moment it is created as `next`, signs
 * only once rotated to `current`, and stays published after retirement until every
 * token it signed has expired. HS256 uses the one configured secret and publishes nothing.
 */
export class SigningKeyring {
  private readonly storage: Storage;
  private readonly masterKeySource: (options: LoadMasterKeyOptions) => Buffer;
  private masterKeyValue: Buffer | undefined;
  private readonly signing: AuthConfig["signing"];
  private readonly tokenLifetimeMs: number;
  private readonly clock: Clock;
  private keys = new Map<string, LoadedSigningKey>();
  private loadedAt = Number.NEGATIVE_INFINITY;
  private loading: Promise<void> | undefined;
  private starting: Promise<void> | undefined;

  constructor(options: {
    storage: Storage;
    /**
     * Called once, on first use. The embedded default creates a key file if missing, but
     * only when told so: never while the store holds keys sealed under another.
     */
    masterKey: (options: LoadMasterKeyOptions) => Buffer;
    signing: AuthConfig["signing"];
    accessTokenSeconds: number;
    clock: Clock;
  }) {
    this.storage = options.storage;
    this.masterKeySource = options.masterKey;
    this.signing = options.signing;
    this.tokenLifetimeMs = options.accessTokenSeconds * 1000;
    this.clock = options.clock;
    if (this.signing.algorithm === "HS256") {
      const secret = this.signing.hs256Secret;
      if (!secret || secret.length < 32) throw new TypeError("HS256 needs a secret of at least 256 bits");
      // The kid names the secret without revealing it (a hash of a 256-bit secret).
      const kid = hs256KeyId(secret);
      const key = createSecretKey(secret);
      this.keys.set(kid, {
        kid,
        alg: "HS256",
        state: "current",
        privateKey: key,
        verifyKey: key,
        publicJwk: null,
        publishUntil: null,
      });
      this.loadedAt = Number.POSITIVE_INFINITY;
    }
  }

  /**
   * The master key, loaded on first use. `ifMissing`: whether a missing default key file
   * may be created, which is only right while the store holds no key sealed under one.
   */
  private masterKey(ifMissing: LoadMasterKeyOptions["ifMissing"]): Buffer {
    this.masterKeyValue ??= this.masterKeySource({ ifMissing });
    return this.masterKeyValue;
  }

  /**
   * A key for another purpose derived from the master key (HMAC-SHA256 of a label, as in
   * HKDF-Expand with one block), so each use has its own key and none reveals the master.
   */
  derivedKey(label: string): Buffer {
    // Servers call this after start(), which has loaded the master key (or refused to start).
    return createHmac("sha256", this.masterKey("create")).update(`gatehouse derived key\0${label}`).digest();
  }

  /**
   * Loads the keys, creating the first current and next keys on a new store. Runs once,
   * on first use; call it at startup to fail fast on a missing or wrong master key.
   */
  start(): Promise<void> {
    this.starting ??= this.initialise().catch((error) => {
      this.starting = undefined;
      throw error;
    });
    return this.starting;
  }

  private async initialise(): Promise<void> {
    if (this.signing.algorithm === "HS256") return;
    await this.reload();
    if (this.currentKey()) return;
    const now = this.clock();
    const alg = this.signing.algorithm;
    await this.storage.signingKeys.initialise(
      [
        // A new store: no key is sealed yet, so a first master key may be made.
        newSigningKey(alg, { masterKey: this.masterKey("create"), state: "current", now }),
        newSigningKey(alg, { masterKey: this.masterKey("create"), state: "next", now }),
      ],
      auditEvent(SYSTEM_ACTOR, now, {
        action: "signing_key.initialise",
        outcome: "success",
        detail: { alg },
      }),
    );
    await this.reload();
    if (!this.currentKey()) throw new Error("no current signing key after initialisation");
  }

  private currentKey(): LoadedSigningKey | undefined {
    for (const key of this.keys.values()) if (key.state === "current") return key;
    return undefined;
  }

  private reload(): Promise<void> {
    this.loading ??= (async () => {
      try {
        const now = this.clock();
        const records = await this.storage.signingKeys.list(now);
        const next = new Map<string, LoadedSigningKey>();
        for (const record of records) {
          const cached = this.keys.get(record.kid);
          // Unsealing is the costly part; a known kid only needs its new state.
          next.set(
            record.kid,
            cached
              ? { ...cached, state: record.state, publishUntil: record.publishUntil }
              : loadSigningKey(record, this.masterKey("refuse")),
          );
        }
        this.keys = next;
        this.loadedAt = now;
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  /**
   * Started, and the cached key set no older than RELOAD_AFTER_MS: another node may have
   * rotated (or retired a key) since this one last looked.
   */
  private async fresh(now: number = this.clock()): Promise<void> {
    await this.start();
    if (now - this.loadedAt > RELOAD_AFTER_MS) await this.reload();
  }

  /** The key to sign with now. */
  async signingKey(): Promise<LoadedSigningKey> {
    await this.fresh();
    const key = this.currentKey();
    if (!key) throw new Error("the keyring has no current signing key (was start() called?)");
    return key;
  }

  /** A published key by kid, or null. An unknown kid triggers at most one reload per floor. */
  async verificationKey(kid: string): Promise<LoadedSigningKey | null> {
    const now = this.clock();
    // A key another node retired keeps the state this node last read, with no end of
    // publication, until a reload: on a node that only verifies (no sign-in, no refresh,
    // no JWKS request reloads it) it would verify for ever, leaked or not.
    await this.fresh(now);
    let key = this.keys.get(kid);
    if (!key && now - this.loadedAt > UNKNOWN_KID_FLOOR_MS) {
      await this.reload();
      key = this.keys.get(kid);
    }
    if (!key || (key.publishUntil !== null && key.publishUntil <= now)) return null;
    return key;
  }

  /** Algorithms a token may be signed with: those of the keys in the ring, nothing else. */
  algorithms(): SigningAlgorithm[] {
    return [...new Set([...this.keys.values()].map((key) => key.alg))];
  }

  /** RFC 7517 key set: public halves only, of every published key. */
  async jwks(): Promise<Jwks> {
    const now = this.clock();
    await this.fresh(now);
    const keys: Array<Record<string, unknown>> = [];
    for (const key of this.keys.values()) {
      if (!key.publicJwk || (key.publishUntil !== null && key.publishUntil <= now)) continue;
      keys.push(key.publicJwk);
    }
    return { keys };
  }

  /**
   * next → current, current → retired (published until its last token expires), and a
   * new next key. Returns the kid now signing, or null when another node rotated first.
   * With `onlyIfCurrent`, rotates only while that key is still the one signing: a node
   * that judged it due from a cached keyring must not retire the key another node has
   * just made current (published only seconds before).
   */
  async rotate(
    context: ActorContext,
    options: { onlyIfCurrent?: string } = {},
  ): Promise<{ current: string; next: string; retired: string } | null> {
    if (this.signing.algorithm === "HS256") {
      throw new TypeError("HS256 keys are configured, not rotated: change GATEHOUSE_JWT_HS256_SECRET");
    }
    await this.start();
    await this.reload();
    const current = this.currentKey();
    const upcoming = [...this.keys.values()].find((key) => key.state === "next");
    if (!current || !upcoming) throw new Error("the keyring has no current or next key (was start() called?)");
    if (options.onlyIfCurrent !== undefined && current.kid !== options.onlyIfCurrent) return null;
    const now = this.clock();
    const newNext = newSigningKey(this.signing.algorithm, { masterKey: this.masterKey("refuse"), state: "next", now });
    const rotated = await this.storage.signingKeys.rotate(
      current.kid,
      { at: now, publishUntil: now + this.tokenLifetimeMs + PUBLISH_MARGIN_MS, newNext },
      auditEvent(context, now, {
        action: "signing_key.rotate",
        outcome: "success",
        targetType: "signing_key",
        targetId: upcoming.kid,
        detail: { retired: current.kid, next: newNext.kid, alg: newNext.alg },
      }),
    );
    await this.reload();
    return rotated ? { current: upcoming.kid, next: newNext.kid, retired: current.kid } : null;
  }

  /** How long the next key has been published (ms), or null when there is none. */
  async nextKeyPublishedFor(): Promise<number | null> {
    const now = this.clock();
    const next = (await this.storage.signingKeys.list(now)).find((record) => record.state === "next");
    return next ? now - next.createdAt : null;
  }

  /**
   * The stored keys, split by whether the configured master key unseals them. A missing
   * default key file is an error here (`refuse`) unless the caller is replacing the keys.
   */
  async storedKeysByUnsealing(
    options: LoadMasterKeyOptions = { ifMissing: "refuse" },
  ): Promise<{ readable: SigningKeyRecord[]; unreadable: SigningKeyRecord[] }> {
    const records = await this.storage.signingKeys.list(this.clock());
    const readable = records.filter((record) => unsealsWith(record, this.masterKey(options.ifMissing)));
    return { readable, unreadable: records.filter((record) => !readable.includes(record)) };
  }

  /**
   * Deletes the stored keys this master key cannot unseal (they were sealed under another,
   * lost or replaced) and creates a current and a next key where none is left, so the
   * keyring starts again. Tokens the deleted keys signed stop verifying. Does not load the
   * keyring first: `start()` is what fails on such keys. `discarded` is empty, and
   * nothing changed, when every key unseals.
   */
  async replaceUnreadable(
    context: ActorContext,
  ): Promise<{ discarded: string[]; created: Array<{ kid: string; state: SigningKeyState }> }> {
    if (this.signing.algorithm === "HS256") {
      throw new TypeError("HS256 keys are configured, not stored: change GATEHOUSE_JWT_HS256_SECRET");
    }
    const now = this.clock();
    // Replacing the keys a lost master key sealed: a new default key file may be made.
    const { readable: kept, unreadable } = await this.storedKeysByUnsealing({ ifMissing: "create" });
    if (unreadable.length === 0) return { discarded: [], created: [] };
    const alg = this.signing.algorithm;
    const fresh = (["current", "next"] as const)
      .filter((state) => !kept.some((record) => record.state === state))
      .map((state) => newSigningKey(alg, { masterKey: this.masterKey("create"), state, now }));
    const discarded = unreadable.map((record) => record.kid);
    await this.storage.signingKeys.replace(
      discarded,
      fresh,
      auditEvent(context, now, {
        action: "signing_key.reset",
        outcome: "success",
        targetType: "signing_key",
        targetId: fresh.find((record) => record.state === "current")?.kid ?? null,
        detail: { discarded, created: fresh.map((record) => record.kid), alg },
      }),
    );
    return { discarded, created: fresh.map((record) => ({ kid: record.kid, state: record.state })) };
  }

  /** Rotates when the current key has signed for the configured number of days. */
  async rotateIfDue(context: ActorContext): Promise<boolean> {
    if (this.signing.algorithm === "HS256" || this.signing.rotationDays === 0) return false;
    await this.fresh();
    const current = this.currentKey();
    if (!current) return false;
    const records = await this.storage.signingKeys.list(this.clock());
    const activatedAt = records.find((record) => record.kid === current.kid)?.activatedAt ?? 0;
    if (this.clock() - activatedAt < this.signing.rotationDays * 86_400_000) return false;
    // The key judged due, not whichever is current once reloaded: this node's keyring may
    // be up to RELOAD_AFTER_MS old, and another node may have rotated since.
    return (await this.rotate(context, { onlyIfCurrent: current.kid })) !== null;
  }
}
