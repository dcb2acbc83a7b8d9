import { createHmac } from "node:crypto";
import { type ActorContext, auditEvent } from "../audit/context.ts";
import type { AuthConfig } from "../config/auth-config.ts";
import type { Clock } from "../lib/clock.ts";
import { sameSecret } from "../lib/constant-time.ts";
import { newId } from "../lib/ids.ts";
import type { OnIssued } from "../observability/issued.ts";
import type { SessionRecord, Storage, UserRecord } from "../storage/types.ts";
import { digestOpaqueToken, isOpaqueToken, newOpaqueToken, type RandomBytes } from "../tokens/opaque-token.ts";

/**
 * Use is written to storage at most once a minute, and at least ten times per idle
 * window: a session then idles out no more than a tenth of its limit early. (Once a
 * minute alone let a session on the 60-second minimum expire while in use.)
 */
const TOUCH_AT_MOST_EVERY_MS = 60_000;

export interface ActiveSession {
  session: SessionRecord;
  user: UserRecord;
  /** The cookie value; needed to derive the CSRF token. */
  secret: string;
}

/**
 * Cookie sessions for browsers. The cookie holds 256 random bits; storage holds their
 * SHA-256. A new sign-in always makes a new id (and ends the one presented), so an id
 * planted before sign-in is worthless (session fixation, OWASP ASVS V3.2.1).
 */
export class SessionService {
  private readonly storage: Storage;
  private readonly clock: Clock;
  private readonly settings: Pick<AuthConfig, "sessionSeconds" | "sessionIdleSeconds">;
  private readonly randomBytes: RandomBytes | undefined;
  private readonly onIssued: OnIssued;

  constructor(options: {
    storage: Storage;
    clock: Clock;
    settings: Pick<AuthConfig, "sessionSeconds" | "sessionIdleSeconds">;
    randomBytes?: RandomBytes;
    onIssued?: OnIssued;
  }) {
    this.onIssued = options.onIssued ?? (() => {});
    this.storage = options.storage;
    this.clock = options.clock;
    this.settings = options.settings;
    this.randomBytes = options.randomBytes;
  }

  async start(
    user: UserRecord,
    options: { replacing: string | null; context: ActorContext },
  ): Promise<{ secret: string; session: SessionRecord }> {
    const now = this.clock();
    const secret = newOpaqueToken(this.randomBytes);
    const expiresAt = now + this.settings.sessionSeconds * 1000;
    const session: SessionRecord = {
      id: newId("ses", now),
      digest: digestOpaqueToken(secret),
      userId: user.id,
      createdAt: now,
      lastSeenAt: now,
      expiresAt,
      idleExpiresAt: Math.min(now + this.settings.sessionIdleSeconds * 1000, expiresAt),
      revokedAt: null,
      ip: options.context.ip,
      userAgent: options.context.userAgent,
    };
    const replaces =
      options.replacing && isOpaqueToken(options.replacing) ? digestOpaqueToken(options.replacing) : null;
    await this.storage.sessions.insert(
      session,
      replaces,
      auditEvent(options.context, now, {
        action: "session.create",
        outcome: "success",
        targetType: "user",
        targetId: user.id,
        detail: { session: session.id },
      }),
    );
    this.onIssued("session");
    return { secret, session };
  }

  /** The live session for a cookie value, or null (unknown, ended, timed out, user gone or disabled). */
  async resolve(secret: string): Promise<ActiveSession | null> {
    if (!isOpaqueToken(secret)) return null;
    const session = await this.storage.sessions.findByDigest(digestOpaqueToken(secret));
    const now = this.clock();
    if (!session || session.revokedAt !== null || now >= session.expiresAt || now >= session.idleExpiresAt) return null;
    const user = await this.storage.users.findById(session.userId);
    if (user?.status !== "active") return null;
    const touchEvery = Math.min(TOUCH_AT_MOST_EVERY_MS, (this.settings.sessionIdleSeconds * 1000) / 10);
    if (now - session.lastSeenAt >= touchEvery) {
      const idleExpiresAt = Math.min(now + this.settings.sessionIdleSeconds * 1000, session.expiresAt);
      await this.storage.sessions.touch(session.id, now, idleExpiresAt);
    }
    return { session, user, secret };
  }

  list(userId: string): Promise<SessionRecord[]> {
    return this.storage.sessions.listForUser(userId, this.clock());
  }

  async end(userId: string, sessionId: string, context: ActorContext): Promise<boolean> {
    const now = this.clock();
    return this.storage.sessions.revoke(
      userId,
      sessionId,
      now,
      auditEvent(context, now, {
        action: "session.end",
        outcome: "success",
        targetType: "user",
        targetId: userId,
        detail: { session: sessionId },
      }),
    );
  }

  /** Ends every session and refresh token family of the user (admin action). */
  async endAll(userId: string, context: ActorContext): Promise<number> {
    const now = this.clock();
    return this.storage.sessions.revokeAllForUser(
      userId,
      now,
      auditEvent(context, now, { action: "session.end_all", outcome: "success", targetType: "user", targetId: userId }),
    );
  }

  /**
   * The CSRF token of a session: HMAC of a fixed label keyed with the session secret.
   * Nothing to store, different per session, and worthless without the cookie it came
   * with (the "signed double-submit" pattern, OWASP CSRF Prevention Cheat Sheet).
   */
  static csrfToken(secret: string): string {
    return createHmac("sha256", secret).update("gatehouse csrf v1").digest("base64url");
  }

  static checkCsrfToken(secret: string, presented: string | undefined): boolean {
    return sameSecret(SessionService.csrfToken(secret), presented);
  }
}
