import { type ActorContext, auditEvent } from "../audit/context.ts";
import { BusyError, InvalidCredentialsError, RateLimitedError } from "../errors/gatehouse-error.ts";
import type { Gatehouse } from "../gatehouse.ts";
import type { UserRecord } from "../storage/types.ts";
import { normaliseEmail } from "./email.ts";

/** What a sign-in uses of the Gatehouse. */
export type SignInParts = Pick<Gatehouse, "loginThrottle" | "users" | "storage" | "audit" | "clock">;

/**
 * Password sign-in shared by /auth/login and /auth/session: throttled per account, per
 * address and per pair (src/users/login-throttle.ts), one answer for every failure, every
 * attempt audited (never the password). `issue` makes what the sign-in hands out (tokens,
 * a session) for the user whose password checked out; its success is what is audited.
 */
export async function signInWithPassword<T>(
  gatehouse: SignInParts,
  /** Who is signing in, as far as the HTTP layer knows (actor "anonymous", the address). */
  context: ActorContext,
  credentials: { email: string; password: string },
  method: "token" | "session",
  issue: (user: UserRecord) => Promise<T>,
  /** Ends what `issue` made, when the account changed while it was being made. */
  undo: (issued: T, user: UserRecord) => Promise<unknown>,
): Promise<T> {
  const account = normaliseEmail(credentials.email) ?? credentials.email.trim().toLowerCase().slice(0, 320);
  const subject = { account, ip: context.ip ?? "" };
  const record = (outcome: "success" | "failure", detail: Record<string, unknown>, userId: string | null) =>
    gatehouse.audit.record(
      auditEvent(userId ? { ...context, actor: `user:${userId}` } : context, gatehouse.clock(), {
        action: "auth.login",
        outcome,
        targetType: userId ? "user" : null,
        targetId: userId,
        detail: { method, ...detail },
      }),
    );
  // Before the password, so a refusal costs no argon2. An account under attack still
  // admits the addresses its owner signed in from, so an attacker elsewhere cannot keep
  // the owner out. An admitted attempt counts against the account from here on, until
  // the password is found right (attempts sent together are braked as they start).
  const wait = await gatehouse.loginThrottle.admit(subject);
  if (wait > 0) {
    record("failure", { reason: "THROTTLED", retryAfter: wait }, null);
    throw new RateLimitedError(wait, "sign-in");
  }
  const result = await gatehouse.users.signIn(credentials.email, credentials.password).catch(async (error) => {
    // Never checked (the hasher is full, storage failed): not the owner's failure.
    await gatehouse.loginThrottle.release(subject);
    // Still an attempt: a burst refused for BUSY shows in the log (who is unknown yet).
    if (error instanceof BusyError) record("failure", { reason: "BUSY" }, null);
    throw error;
  });
  if (!result.ok) {
    record("failure", { reason: result.reason }, result.userId);
    await gatehouse.loginThrottle.rejected(subject);
    throw new InvalidCredentialsError();
  }
  // The password was checked against the account as it was a hash ago (tens of
  // milliseconds). If the account changed since (deleted, disabled, or its password
  // changed, which ends every session and sign-in), what this sign-in makes must not
  // outlive the change: the account is read again once it is made, and it is undone.
  // A change after that read ends it with the rest.
  const changed = (now: UserRecord | null): string | null =>
    now === null
      ? "USER_GONE"
      : now.status !== "active"
        ? "DISABLED"
        : now.passwordChangedAt !== result.user.passwordChangedAt
          ? "PASSWORD_CHANGED"
          : null;
  // The password was right: however this sign-in ends from here, the attempt is not a
  // guess, so it stops counting against the account (`success`, or `release` if it fails).
  let counted = true;
  let issued: T;
  try {
    try {
      issued = await issue(result.user);
    } catch (error) {
      // Storage refuses a session or token for a user deleted meanwhile: not a 500.
      const now = await gatehouse.storage.users.findById(result.user.id).catch(() => undefined);
      if (now !== null) throw error;
      record("failure", { reason: "USER_GONE" }, result.user.id);
      throw new InvalidCredentialsError();
    }
    let reason: string | null;
    try {
      reason = changed(await gatehouse.storage.users.findSettled(result.user.id));
    } catch (error) {
      // Not known to be settled: what was made is not handed out, so it is ended.
      await undo(issued, result.user).catch(() => {});
      throw error;
    }
    if (reason !== null) {
      await undo(issued, result.user);
      record("failure", { reason }, result.user.id);
      throw new InvalidCredentialsError();
    }
    await gatehouse.loginThrottle.success(subject);
    counted = false;
  } finally {
    if (counted) await gatehouse.loginThrottle.release(subject).catch(() => {});
  }
  record("success", {}, result.user.id);
  return issued;
}
