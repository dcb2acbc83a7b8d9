import { type ActorContext, auditEvent } from "../audit/context.ts";
import {
  BusyError,
  ConflictError,
  NotFoundError,
  PasswordRejectedError,
  ValidationError,
} from "../errors/gatehouse-error.ts";
import type { Clock } from "../lib/clock.ts";
import { newId } from "../lib/ids.ts";
import type { Storage, UserListQuery, UserRecord, UserUpdate } from "../storage/types.ts";
import { newEmail, newEmailRefusal, normaliseEmail } from "./email.ts";
import type { PasswordHasher } from "./password-hasher.ts";
import { PasswordPolicy } from "./password-policy.ts";

export interface NewUser {
  email: string;
  password: string;
  scopes?: string[];
}

/** Why a sign-in failed: for the audit log only, never for the client. */
export type SignInFailure = "UNKNOWN_USER" | "WRONG_PASSWORD" | "DISABLED";

export type SignInResult =
  | { ok: true; user: UserRecord }
  /** `userId` is for the audit log: known account, wrong password or disabled. */
  | { ok: false; reason: SignInFailure; userId: string | null };

/** The names of the fields an update changed (none when it set what was there). */
function changedFields(before: UserRecord, after: UserRecord): Array<keyof UserUpdate> {
  const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  return same(before.scopes, after.scopes) ? [] : ["scopes"];
}

/** Users and their passwords. Knows nothing of HTTP, tokens or cookies. */
export class UserService {
  private readonly storage: Storage;
  private readonly hasher: PasswordHasher;
  readonly policy: PasswordPolicy;
  private readonly clock: Clock;

  constructor(options: { storage: Storage; hasher: PasswordHasher; policy: PasswordPolicy; clock: Clock }) {
    this.storage = options.storage;
    this.hasher = options.hasher;
    this.policy = options.policy;
    this.clock = options.clock;
  }

  /** An address being registered (the stricter rules of `newEmail`). */
  private email(input: string): string {
    const email = newEmail(input);
    if (email) return email;
    const normalised = normaliseEmail(input);
    const refusal = normalised === null ? null : newEmailRefusal(normalised);
    // Looks right on screen, yet holds a character that is not: say which kind.
    if (refusal === "INVISIBLE") {
      throw new ValidationError(
        "email holds an invisible character (a zero-width space or joiner, a direction mark) or a private-use one: type the address plainly.",
      );
    }
    if (refusal === "EMPTY_LABEL") {
      throw new ValidationError(
        "email's domain has an empty label (a leading, trailing or doubled dot): write it as example.com, without a final dot.",
      );
    }
    throw new ValidationError("email must be an email address.");
  }

  private async assertAcceptable(password: string, email: string | null): Promise<void> {
    const rejection = await this.policy.check(password, { email });
    if (rejection) throw new PasswordRejectedError(rejection, this.policy.message(rejection));
  }

  private async newRecord(input: NewUser): Promise<UserRecord> {
    const email = this.email(input.email);
    await this.assertAcceptable(input.password, email);
    const now = this.clock();
    return {
      id: newId("usr", now),
      email,
      passwordHash: await this.hasher.hash(PasswordPolicy.normalise(input.password)),
      scopes: [...new Set(input.scopes ?? [])],
      status: "active",
      createdAt: now,
      updatedAt: now,
      disabledAt: null,
      passwordChangedAt: now,
    };
  }

  /** Admin creation: a taken email is a conflict (admins may know which accounts exist). */
  async create(input: NewUser, context: ActorContext): Promise<UserRecord> {
    const record = await this.newRecord(input);
    const inserted = await this.storage.users.insert(
      record,
      auditEvent(context, record.createdAt, {
        action: "user.create",
        outcome: "success",
        targetType: "user",
        targetId: record.id,
      }),
    );
    if (!inserted) throw new ConflictError("A user with this email exists.");
    return record;
  }

  /**
   * Public sign-up. Answers the same whether or not the email was free, so sign-up cannot
   * be used to find out who has an account; the audit log records which it was.
   */
  async signUp(input: { email: string; password: string }, context: ActorContext): Promise<void> {
    const record = await this.newRecord(input);
    const inserted = await this.storage.users.insert(
      record,
      auditEvent(context, record.createdAt, {
        action: "user.signup",
        outcome: "success",
        targetType: "user",
        targetId: record.id,
      }),
    );
    if (!inserted) {
      await this.storage.audit.append([
        auditEvent(context, record.createdAt, {
          action: "user.signup",
          outcome: "failure",
          targetType: "user",
          detail: { reason: "EMAIL_TAKEN" },
        }),
      ]);
    }
  }

  async get(id: string): Promise<UserRecord> {
    const record = await this.storage.users.findById(id);
    if (!record) throw new NotFoundError(`No user with id ${id}.`);
    return record;
  }

  list(query: UserListQuery): Promise<UserRecord[]> {
    return this.storage.users.list(query);
  }

  /** Disables the account and ends its sessions and refresh tokens. Idempotent. */
  async disable(id: string, context: ActorContext): Promise<UserRecord> {
    const now = this.clock();
    const record = await this.storage.users.disable(
      id,
      now,
      auditEvent(context, now, { action: "user.disable", outcome: "success", targetType: "user", targetId: id }),
    );
    if (!record) throw new NotFoundError(`No user with id ${id}.`);
    return record;
  }

  /**
   * Lets a disabled user sign in again. Idempotent. The sessions and refresh tokens the
   * disable ended stay ended: whoever held them then must not get them back, so the user
   * signs in afresh.
   */
  async enable(id: string, context: ActorContext): Promise<UserRecord> {
    const now = this.clock();
    const record = await this.storage.users.enable(
      id,
      now,
      auditEvent(context, now, { action: "user.enable", outcome: "success", targetType: "user", targetId: id }),
    );
    if (!record) throw new NotFoundError(`No user with id ${id}.`);
    return record;
  }

  /**
   * Changes what an admin may change (the scopes, for now). Sessions and tokens already
   * issued are left alone: an access token keeps the scope it was signed with until it
   * expires, and the next refresh issues the new scopes (TokenService.refresh). The audit
   * event names the fields whose value changed and, for scopes, both lists (scopes are
   * not secret, and "who gave whom payments:write" is what the log is read for).
   */
  async update(id: string, changes: UserUpdate, context: ActorContext): Promise<UserRecord> {
    const normalised: UserUpdate = changes.scopes === undefined ? {} : { scopes: [...new Set(changes.scopes)] };
    const now = this.clock();
    const record = await this.storage.users.update(id, normalised, now, (before, after) =>
      auditEvent(context, now, {
        action: "user.update",
        outcome: "success",
        targetType: "user",
        targetId: id,
        detail: {
          fields: changedFields(before, after),
          ...(normalised.scopes === undefined ? {} : { scopes: { before: before.scopes, after: after.scopes } }),
        },
      }),
    );
    if (!record) throw new NotFoundError(`No user with id ${id}.`);
    return record;
  }

  async delete(id: string, context: ActorContext): Promise<void> {
    const now = this.clock();
    const deleted = await this.storage.users.delete(
      id,
      now,
      auditEvent(context, now, { action: "user.delete", outcome: "success", targetType: "user", targetId: id }),
    );
    if (!deleted) throw new NotFoundError(`No user with id ${id}.`);
  }

  /**
   * Checks an email and password. Unknown accounts cost the same argon2 work as known
   * ones. A correct password stored with outdated parameters is rehashed.
   */
  async signIn(emailInput: string, password: string): Promise<SignInResult> {
    const email = normaliseEmail(emailInput);
    const candidate = PasswordPolicy.normalise(password);
    const user = email ? await this.storage.users.findByEmail(email) : null;
    if (!user) {
      await this.hasher.burn(candidate);
      return { ok: false, reason: "UNKNOWN_USER", userId: null };
    }
    const checked = await this.hasher.verify(user.passwordHash, candidate);
    if (!checked.ok) return { ok: false, reason: "WRONG_PASSWORD", userId: user.id };
    if (user.status !== "active") return { ok: false, reason: "DISABLED", userId: user.id };
    if (checked.rehash) {
      // The rehash can wait for a quieter sign-in: a full hasher does not fail this one.
      const newHash = await this.hasher.hash(candidate).catch((error: unknown) => {
        if (error instanceof BusyError) return null;
        throw error;
      });
      if (newHash !== null && (await this.storage.users.rehash(user.id, user.passwordHash, newHash, this.clock()))) {
        return { ok: true, user: { ...user, passwordHash: newHash } };
      }
    }
    return { ok: true, user };
  }

  /**
   * An admin sets a user's password (a forgotten one, or one believed stolen): the policy
   * applies as to any new password, and every session and refresh token of the user ends,
   * so whoever knew the old one is out. A disabled user's password can be set too, so
   * that enabling the user afterwards opens no window for the old password. The user is
   * told the new password out of band; Gatehouse sends no email.
   */
  async setPassword(userId: string, newPassword: string, context: ActorContext): Promise<void> {
    // Twice at most: a change by the user that lands between the read and the write wins
    // the optimistic check, and the admin's password is then set over it.
    for (let attempt = 0; attempt < 2; attempt++) {
      const user = await this.get(userId);
      await this.assertAcceptable(newPassword, user.email);
      const passwordHash = await this.hasher.hash(PasswordPolicy.normalise(newPassword));
      const now = this.clock();
      const changed = await this.storage.users.changePassword(
        userId,
        {
          passwordHash,
          at: now,
          changedAt: user.passwordChangedAt,
          keepSessionId: null,
          keepFamilyId: null,
          evenIfDisabled: true,
        },
        auditEvent(context, now, {
          action: "user.password_set",
          outcome: "success",
          targetType: "user",
          targetId: userId,
        }),
      );
      if (changed) return;
    }
    throw new ConflictError("The user's password changed twice while this was being set; try again.");
  }

  /**
   * Changes the password after checking the current one, and ends every other session
   * and refresh token family of the user (the ones named in `keep` survive).
   * Returns false when the current password is wrong.
   */
  async changePassword(
    userId: string,
    change: { currentPassword: string; newPassword: string },
    keep: { sessionId: string | null; familyId: string | null },
    context: ActorContext,
  ): Promise<boolean> {
    const user = await this.get(userId);
    const checked = await this.hasher.verify(user.passwordHash, PasswordPolicy.normalise(change.currentPassword));
    if (!checked.ok) return false;
    await this.assertAcceptable(change.newPassword, user.email);
    const now = this.clock();
    const changed = await this.storage.users.changePassword(
      userId,
      {
        passwordHash: await this.hasher.hash(PasswordPolicy.normalise(change.newPassword)),
        at: now,
        changedAt: user.passwordChangedAt,
        keepSessionId: keep.sessionId,
        keepFamilyId: keep.familyId,
      },
      auditEvent(context, now, {
        action: "user.password_change",
        outcome: "success",
        targetType: "user",
        targetId: userId,
      }),
    );
    if (changed) return true;
    // Nothing changed: the user is gone or disabled, or another change of the password
    // checked here won the race, and then the current password given is no longer it.
    const after = await this.storage.users.findById(userId);
    if (after === null || after.status !== "active") throw new NotFoundError(`No user with id ${userId}.`);
    return false;
  }
}
