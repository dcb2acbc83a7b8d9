import { AUDIT_COLUMNS, auditColumnValues } from "../audit-columns.ts";
import type { AuditEvent, AuditEventInput, AuditQuery, AuditRepository } from "../types.ts";
import type { PostgresDatabase, Queryable } from "./database.ts";

/** AUDIT_COLUMNS' types, for statements that select parameters rather than insert VALUES. */
export const AUDIT_COLUMN_TYPES = ["bigint", "text", "text", "text", "text", "text", "text", "text", "text", "jsonb"];

/** Inserts events with one statement; callers pass their transaction's client. */
export async function insertAuditEvents(client: Queryable, events: readonly AuditEventInput[]): Promise<void> {
  if (events.length === 0) return;
  const values: unknown[] = [];
  const rows = events.map((event, i) => {
    values.push(...auditColumnValues(event));
    const base = i * AUDIT_COLUMN_TYPES.length;
    return `(${AUDIT_COLUMN_TYPES.map((_, j) => `$${base + j + 1}`).join(", ")})`;
  });
  await client.query(`INSERT INTO audit_events (${AUDIT_COLUMNS}) VALUES ${rows.join(", ")}`, values);
}

interface Row {
  id: number;
  at: number;
  actor: string;
  action: string;
  target_type: string | null;
  target_id: string | null;
  outcome: "success" | "failure";
  ip: string | null;
  user_agent: string | null;
  request_id: string | null;
  detail: Record<string, unknown> | null;
}

function toEvent(row: Row): AuditEvent {
  return {
    id: row.id,
    at: row.at,
    actor: row.actor,
    action: row.action,
    targetType: row.target_type,
    targetId: row.target_id,
    outcome: row.outcome,
    ip: row.ip,
    userAgent: row.user_agent,
    requestId: row.request_id,
    detail: row.detail,
  };
}

export class PostgresAuditRepository implements AuditRepository {
  private readonly database: PostgresDatabase;
  constructor(database: PostgresDatabase) {
    this.database = database;
  }

  async append(events: readonly AuditEventInput[]): Promise<void> {
    if (events.length === 0) return;
    // One transaction, as every mutating method (types.ts): a batch that fails leaves
    // nothing behind, so the caller's retry cannot write part of it twice.
    await this.database.transaction(async (client) => {
      // 10 parameters per event; stay well under PostgreSQL's 65,535 per statement.
      for (let i = 0; i < events.length; i += 1000) {
        await insertAuditEvents(client, events.slice(i, i + 1000));
      }
    });
  }

  async query(query: AuditQuery): Promise<AuditEvent[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    const add = (column: string, operator: string, value: string | number | undefined) => {
      if (value === undefined) return;
      params.push(value);
      where.push(`${column} ${operator} $${params.length}`);
    };
    add("action", "=", query.action);
    add("actor", "=", query.actor);
    add("target_id", "=", query.targetId);
    add("outcome", "=", query.outcome);
    add("at", ">=", query.since);
    add("at", "<", query.until);
    add("id", "<", query.before);
    params.push(query.limit);
    const { rows } = await this.database.query<Row>(
      `SELECT * FROM audit_events ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT $${params.length}`,
      params,
    );
    return rows.map(toEvent);
  }
}
