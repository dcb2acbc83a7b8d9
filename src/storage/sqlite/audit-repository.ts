import { AUDIT_COLUMNS, auditColumnValues } from "../audit-columns.ts";
import type { AuditEvent, AuditEventInput, AuditQuery, AuditRepository } from "../types.ts";
import type { SqliteDatabase } from "./database.ts";

const INSERT = `INSERT INTO audit_events (${AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

/** Inserts one event on the current connection; callers wrap it in their transaction. */
export function insertAuditEvent(database: SqliteDatabase, event: AuditEventInput): void {
  database.statement(INSERT).run(...auditColumnValues(event));
}

type Row = Record<string, string | number | null>;

/** Ids read per slice of an unindexed walk: a few milliseconds of the event loop each. */
const WALK_SLICE = 10_000;

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
  /** Ids per slice of `walk` (tests make it small to cross slices with a few events). */
  walkSlice = WALK_SLICE;
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
    const unindexed = query.outcome !== undefined || query.since !== undefined || query.until !== undefined;
    if (!unindexed) {
      // Walks the filter's (column, id) index, or the table from the newest row: it stops
      // at the page's last event.
      add("id < ?", query.before);
      const sql = `SELECT * FROM audit_events ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?`;
      return (this.database.statement(sql).all(...params, query.limit) as Row[]).map(toEvent);
    }
    return this.walk(where, params, query);
  }

  /**
   * Filters no index serves in id order (time, outcome) walk newest first in slices of ids,
   * yielding to other requests between them; with an indexed filter too, each slice is a
   * range of that filter's index. As one statement, a filter that matched few rows read
   * the whole table, or all of an action's rows, on the event loop: ~0.5 s per 2,000,000
   * events, during which the server answered nothing. Same rows, same order.
   */
  private async walk(where: string[], params: Array<string | number>, query: AuditQuery): Promise<AuditEvent[]> {
    const bounds = this.database
      .statement(
        // Two subqueries: SQLite reads min() or max() off the index only when each is alone.
        "SELECT (SELECT min(id) FROM audit_events) AS low, (SELECT max(id) FROM audit_events) AS high",
      )
      .get() as {
      low: number | null;
      high: number | null;
    };
    if (bounds.low === null || bounds.high === null) return [];
    const sql = `SELECT * FROM audit_events WHERE id < ? AND id >= ? AND ${where.join(" AND ")} ORDER BY id DESC LIMIT ?`;
    const events: AuditEvent[] = [];
    let below = Math.min(query.before ?? Number.POSITIVE_INFINITY, bounds.high + 1);
    while (below > bounds.low && events.length < query.limit) {
      const from = Math.max(bounds.low, below - this.walkSlice);
      const rows = this.database.statement(sql).all(below, from, ...params, query.limit - events.length) as Row[];
      for (const row of rows) events.push(toEvent(row));
      below = from;
      if (below > bounds.low && events.length < query.limit) await new Promise((resolve) => setImmediate(resolve));
    }
    return events;
  }
}
