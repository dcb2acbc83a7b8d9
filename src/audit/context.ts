import type { AuditEventInput } from "../storage/types.ts";

/** Who is acting and from where; every audit event is built from one. */
export interface ActorContext {
  actor: string;
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
}

export const CLI_ACTOR: ActorContext = { actor: "cli", ip: null, userAgent: null, requestId: null };

export function auditEvent(
  context: ActorContext,
  at: number,
  fields: Pick<AuditEventInput, "action" | "outcome"> &
    Partial<Pick<AuditEventInput, "targetType" | "targetId" | "detail">>,
): AuditEventInput {
  return {
    at,
    actor: context.actor,
    ip: context.ip,
    userAgent: context.userAgent,
    requestId: context.requestId,
    action: fields.action,
    outcome: fields.outcome,
    targetType: fields.targetType ?? null,
    targetId: fields.targetId ?? null,
    detail: fields.detail ?? null,
  };
}
