import type { AuditEventInput } from "./types.ts";

/**
 * The audit_events columns an event is written to, in one fixed order shared by both
 * backends (as key-columns.ts is for keys); `id` is assigned by the database.
 */
export const AUDIT_COLUMNS = "at, actor, action, target_type, target_id, outcome, ip, user_agent, request_id, detail";

/** An event as column values (detail as JSON text), in AUDIT_COLUMNS order. */
export function auditColumnValues(event: AuditEventInput): Array<string | number | null> {
  return [
    event.at,
    event.actor,
    event.action,
    event.targetType,
    event.targetId,
    event.outcome,
    event.ip,
    event.userAgent,
    event.requestId,
    event.detail === null ? null : JSON.stringify(event.detail),
  ];
}
