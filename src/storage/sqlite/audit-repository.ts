import { AUDIT_COLUMNS, auditColumnValues } from "../audit-columns.ts";
import type { AuditEvent, AuditEventInput, AuditQuery, AuditRepository } from "../types.ts";
import type { SqliteDatabase } from "./database.ts";

const INSERT = `INSERT INTO audit_events (${AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

/** Inserts one event on the current connection; callers wrap it in their transaction. */
export function insertAuditEvent(database: SqliteDatabase, event: AuditEventInput): void {
  database.statement(INSERT).run(...auditColumnValues(event));
}

type Row = Record<string, string | number | null>;

function toEvent(row: Row): AuditEvent {
  return {
    id: row.id as number,
    at: row.at as number,
    actor: row.actor as string,
    action: row.action as string,
    targetType: row.target_type as string | null,
    targetId: row.target_id as string | null,
    outcome: row.outcome as "success" | "failure",
    ip: row.ip as string | null,
    userAgent: row.user_agent as string | null,
    requestId: row.request_id as string | null,
    detail: row.detail === null ? null : JSON.parse(row.detail as string),
  };
}

export class SqliteAuditRepository implements AuditRepository {
  private readonly database: SqliteDatabase;
  constructor(database: SqliteDatabase) {
    this.database = database;
  }

  async append(events: readonly AuditEventInput[]): Promise<void> {
    if (events.length === 0) return;
    this.database.transaction(() => {
      for (const event of events) insertAuditEvent(this.database, event);
    });
  }

  async query(query: AuditQuery): Promise<AuditEvent[]> {
    const where: string[] = [];
    const params: Array<string | number> = [];
    const add = (clause: string, value: string | number | undefined) => {
      if (value === undefined) return;
      where.push(clause);
      params.push(value);
    };
    add("action = ?", query.action);
    add("actor = ?", query.actor);
    add("target_id = ?", query.targetId);
    add("outcome = ?", query.outcome);
    add("at >= ?", query.since);
    add("at < ?", query.until);
    add("id < ?", query.before);
    const sql = `SELECT * FROM audit_events ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?`;
    const rows = this.database.statement(sql).all(...params, query.limit) as Row[];
    return rows.map(toEvent);
  }
}
