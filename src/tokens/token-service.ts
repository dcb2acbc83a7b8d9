import type { AuditLog } from "../audit/audit-log.ts";
import { type ActorContext, auditEvent } from "../audit/context.ts";
import type { AuthConfig } from "../config/auth-config.ts";
import { InvalidGrantError, InvalidTokenError } from "../errors/gatehouse-error.ts";
import type { Clock } from "../lib/clock.ts";
import { newId } from "../lib/ids.ts";
import type { OnIssued } from "../observability/issued.ts";
import type { SigningKeyring } from "../signing/keyring.ts";
import type { RefreshTokenRecord, Storage, TokenSignIn, UserRecord } from "../storage/types.ts";
import {
  type AccessTokenClaims,
  AccessTokenError,
  type AccessTokenSettings,
  issueAccessToken,
  verifyAccessToken,
} from "./access-token.ts";
import { newRefreshToken, type RandomBytes, refreshTokenRef } from "./opaque-token.ts";

/** The body of a successful sign-in or refresh (RFC 6749 §5.1). */
export interface TokenResponse {
  access_token: string;
  token_type: "Bearer";
  expires_in: number;
  refresh_token: string;
  scope: string;
}

/** What a sign-in or refresh produced: the RFC 6749 body, and what cookie delivery needs. */
export interface IssuedTokens {
  body: TokenResponse;
  /** The sign-in (refresh token family); the access token's `sid`. */
  familyId: string;
  /** When the new refresh token dies if unused (idle limit, capped by the family's end). */
  refreshExpiresAt: number;
}

/**
 * Access and refresh tokens for first-party apps: issue at sign-in, rotate on refresh,
 * revoke at logout, check on use. Knows nothing of HTTP.
 */
export class TokenService {
  private readonly storage: Storage;
  private readonly keyring: SigningKeyring;
  private readonly audit: AuditLog;
  private readonly clock: Clock;
  private readonly randomBytes: RandomBytes | undefined;
  private readonly auth: AuthConfig;
  private readonly onIssued: OnIssued;
  readonly settings: AccessTokenSettings;

  constructor(options: {
    storage: Storage;
    keyring: SigningKeyring;
    audit: AuditLog;
    clock: Clock;
    issuer: string;
    auth: AuthConfig;
    randomBytes?: RandomBytes;
    onIssued?: OnIssued;
  }) {
    this.storage = options.storage;
    this.onIssued = options.onIssued ?? (() => {});
    this.keyring = options.keyring;
    this.audit = options.audit;
    this.clock = options.clock;
    this.randomBytes = options.randomBytes;
    this.auth = options.auth;
    this.settings = {
      issuer: options.issuer,
      audience: options.auth.audience,
      lifetimeSeconds: options.auth.accessTokenSeconds,
    };
  }

  private newRefresh(
    userId: string,
    family: { id: string; expiresAt: number; clientId: string; scope: string },
    now: number,
  ): { token: string; record: RefreshTokenRecord } {
    const id = newId("rtk", now);
    const { token, digest } = newRefreshToken(id, this.randomBytes);
    return {
      token,
      record: {
        id,
        digest,
        familyId: family.id,
        userId,
        clientId: family.clientId,
        scope: family.scope,
        createdAt: now,
        familyExpiresAt: family.expiresAt,
        expiresAt: Math.min(now + this.auth.refreshTokenIdleSeconds * 1000, family.expiresAt),
        usedAt: null,
        replacedBy: null,
        revokedAt: null,
      },
    };
  }

  /** A sign-in or a rotation stored: one access token and one refresh token issued. */
  private countIssued(): void {
    this.onIssued("access_token");
    this.onIssued("refresh_token");
  }

  private async response(userId: string, refresh: { token: string; record: RefreshTokenRecord }, now: number) {
    const access = await issueAccessToken(this.keyring, this.settings, {
      sub: userId,
      scope: refresh.record.scope,
      client_id: refresh.record.clientId,
      sid: refresh.record.familyId,
      now,
    });
    const body: TokenResponse = {
      access_token: access.token,
      token_type: "Bearer",
      expires_in: this.settings.lifetimeSeconds,
      refresh_token: refresh.token,
      scope: refresh.record.scope,
    };
    return body;
  }

  /** A new sign-in: a new refresh token family and a first access token. */
  async issue(user: UserRecord, context: ActorContext): Promise<IssuedTokens> {
    const now = this.clock();
    const family = {
      id: newId("fam", now),
      expiresAt: now + this.auth.refreshTokenSeconds * 1000,
      clientId: this.auth.clientId,
      scope: user.scopes.join(" "),
    };
    const refresh = this.newRefresh(user.id, family, now);
    // Sign first: a failure to sign must not leave a live refresh token behind.
    const body = await this.response(user.id, refresh, now);
    await this.storage.tokens.insertRefresh(
      refresh.record,
      auditEvent(context, now, {
        action: "token.issue",
        outcome: "success",
        targetType: "user",
        targetId: user.id,
        detail: { family: family.id },
      }),
    );
    this.countIssued();
    return { body, familyId: family.id, refreshExpiresAt: refresh.record.expiresAt };
  }

  private refuse(context: ActorContext, reason: string, record: RefreshTokenRecord | null): never {
    this.audit.record(
      auditEvent(context, this.clock(), {
        action: "token.refresh",
        outcome: "failure",
        targetType: record ? "user" : null,
        targetId: record?.userId ?? null,
        detail: { reason, ...(record ? { family: record.familyId } : {}) },
      }),
    );
    throw new InvalidGrantError();
  }

  /**
   * Spends a refresh token for a new pair (RFC 9700 §4.14.2). A token presented after it
   * was spent means two parties hold it: the family is revoked, and the event is recorded
   * as a probable theft. That includes the losers of a race between concurrent refreshes
   * of one token: exactly one wins, and a well-behaved client never races itself.
   */
  async refresh(token: string, context: ActorContext): Promise<IssuedTokens> {
    const ref = refreshTokenRef(token);
    if (ref === null) this.refuse(context, "MALFORMED", null);
    // One read: the token, and whether its user is still active.
    const found = await this.storage.tokens.findRefreshForRotation(ref);
    if (!found) this.refuse(context, "UNKNOWN", null);
    const { record } = found;
    const now = this.clock();
    if (record.usedAt === null && record.revokedAt !== null) this.refuse(context, "REVOKED", record);
    if (record.usedAt === null && (now >= record.expiresAt || now >= record.familyExpiresAt)) {
      this.refuse(context, "EXPIRED", record);
    }
    if (!found.userActive) this.refuse(context, "USER_INACTIVE", record);
    // A token already spent is a replay: straight to the rotation, which revokes the family,
    // without signing an access token first (a signature costs far more than the lookup, and
    // a replayed token must not buy one). Concurrent first uses all get here with
    // `usedAt === null`; the conditional write below picks the one winner.
    if (record.usedAt !== null) return this.replayed(record, now, context);
    // The user's scopes now, not the ones the family was issued with: a scope an admin
    // removed (PATCH /v1/users/{id}) is gone from the next access token, so within one
    // access-token lifetime of the change, and one added arrives without a new sign-in.
    const replacement = this.newRefresh(
      record.userId,
      {
        id: record.familyId,
        expiresAt: record.familyExpiresAt,
        clientId: record.clientId,
        scope: found.userScopes.join(" "),
      },
      now,
    );
    const body = await this.response(record.userId, replacement, now);
    const outcome = await this.storage.tokens.rotateRefresh(ref, replacement.record, now, {
      rotated: auditEvent(context, now, {
        action: "token.refresh",
        outcome: "success",
        targetType: "user",
        targetId: record.userId,
        detail: { family: record.familyId },
      }),
      reused: this.reuseEvent(record, now, context),
    });
    // Lost to a logout, password change or disable: refused as a revoked token, not
    // recorded as a theft (nobody presented a spent token).
    if (outcome.outcome === "revoked") this.refuse(context, "REVOKED", outcome.record);
    if (outcome.outcome !== "rotated") throw new InvalidGrantError();
    this.countIssued();
    return { body, familyId: record.familyId, refreshExpiresAt: replacement.record.expiresAt };
  }

  private reuseEvent(record: RefreshTokenRecord, now: number, context: ActorContext) {
    return auditEvent(context, now, {
      action: "token.refresh_reuse",
      outcome: "failure",
      targetType: "user",
      targetId: record.userId,
      detail: { family: record.familyId, probableTheft: true, familyRevoked: true },
    });
  }

  /**
   * A spent token presented again: what a rotation that loses its race does (the family
   * revoked, the reuse recorded), without a replacement to write or a token to sign.
   */
  private async replayed(record: RefreshTokenRecord, now: number, context: ActorContext): Promise<never> {
    await this.storage.tokens.revokeFamily(
      record.familyId,
      { at: now, denyJti: null },
      this.reuseEvent(record, now, context),
    );
    throw new InvalidGrantError();
  }

  /**
   * Checks an access token and that it is still good: not denied by jti, its sign-in not
   * revoked, its user still active. Every failure is the same InvalidTokenError.
   */
  async authenticate(token: string, context: ActorContext): Promise<{ claims: AccessTokenClaims; user: UserRecord }> {
    const now = this.clock();
    let reason: string;
    try {
      const claims = await verifyAccessToken(this.keyring, this.settings, token, now);
      const [denied, familyRevoked, user] = await Promise.all([
        this.storage.tokens.isJtiDenied(claims.jti),
        this.storage.tokens.isFamilyRevoked(claims.sid),
        this.storage.users.findById(claims.sub),
      ]);
      if (!denied && !familyRevoked && user && user.status === "active") return { claims, user };
      reason = denied || familyRevoked ? "DENIED" : "USER_INACTIVE";
    } catch (error) {
      if (!(error instanceof AccessTokenError)) throw error;
      reason = error.reason;
    }
    this.audit.record(
      auditEvent(context, now, { action: "auth.access_token", outcome: "failure", detail: { reason } }),
    );
    throw new InvalidTokenError();
  }

  /**
   * Ends the sign-in a refresh token belongs to, for a client whose access token has
   * expired (an app left idle for 15 minutes still has to be able to log out). The token
   * must be one Gatehouse issued, secret and all (found by its id and digest, as a refresh
   * is), so nobody can end another user's sign-in with a made-up one. Revoked or expired
   * tokens end their family too: that is what the client asked for; a spent one does as
   * well, and is audited as a refresh-token reuse. Answers nothing either way, as RFC 7009
   * revocation does; an unknown token is audited.
   */
  async logoutWithRefreshToken(token: string, context: ActorContext): Promise<void> {
    const now = this.clock();
    const ref = refreshTokenRef(token);
    const found = ref === null ? null : await this.storage.tokens.findRefreshForRotation(ref);
    if (!found) {
      this.audit.record(
        auditEvent(context, now, {
          action: "token.logout",
          outcome: "failure",
          detail: { reason: ref === null ? "MALFORMED" : "UNKNOWN", via: "refresh_token" },
        }),
      );
      return;
    }
    const { record } = found;
    // A spent token is a replay whatever the route: recorded as the probable theft it is
    // (someone holding an old token of the family), not as the user logging out.
    const audit =
      record.usedAt !== null
        ? this.reuseEvent(record, now, context)
        : auditEvent(context, now, {
            action: "token.logout",
            outcome: "success",
            targetType: "user",
            targetId: record.userId,
            detail: { family: record.familyId, via: "refresh_token" },
          });
    await this.storage.tokens.revokeFamily(record.familyId, { at: now, denyJti: null }, audit);
  }

  /** The user's token sign-ins that can still refresh, most recently refreshed first (at most 100). */
  listSignIns(userId: string): Promise<TokenSignIn[]> {
    return this.storage.tokens.listActiveSignIns(userId, this.clock(), 100);
  }

  /**
   * Ends one of the user's own token sign-ins (from a list of their devices, say): its
   * refresh token family is revoked, and so its access tokens at Gatehouse. False when
   * it is not the user's, or can no longer refresh anyway.
   */
  async endSignIn(userId: string, familyId: string, context: ActorContext): Promise<boolean> {
    const now = this.clock();
    const notFound = () =>
      this.audit.record(
        auditEvent(context, now, {
          action: "token.logout",
          outcome: "failure",
          targetType: "user",
          targetId: userId,
          detail: { reason: "NOT_FOUND", family: familyId, via: "sign_in_list" },
        }),
      );
    // Ownership and liveness in one read (family_id is indexed). Someone else's sign-in, or
    // one already ended: recorded, as a probe of ids would be.
    if (!(await this.storage.tokens.isActiveSignIn(userId, familyId, now))) {
      notFound();
      return false;
    }
    // Of concurrent calls that all found it live, the one whose revocation took ends it;
    // the others answer as if it had ended already (on PostgreSQL they did get here).
    const revoked = await this.storage.tokens.revokeFamily(
      familyId,
      { at: now, denyJti: null, auditOnlyIfRevoked: true },
      auditEvent(context, now, {
        action: "token.logout",
        outcome: "success",
        targetType: "user",
        targetId: userId,
        detail: { family: familyId, via: "sign_in_list" },
      }),
    );
    if (revoked > 0) return true;
    notFound();
    return false;
  }

  /** Ends the sign-in: revokes the refresh family and denies this access token until it expires. */
  async logout(claims: AccessTokenClaims, context: ActorContext): Promise<void> {
    const now = this.clock();
    await this.storage.tokens.revokeFamily(
      claims.sid,
      { at: now, denyJti: { jti: claims.jti, expiresAt: claims.exp * 1000 } },
      auditEvent(context, now, {
        action: "token.logout",
        outcome: "success",
        targetType: "user",
        targetId: claims.sub,
        detail: { family: claims.sid },
      }),
    );
  }
}
