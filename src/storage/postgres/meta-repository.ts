import type { MetaRepository } from "../types.ts";
import type { PostgresDatabase } from "./database.ts";

export class PostgresMetaRepository implements MetaRepository {
  private readonly database: PostgresDatabase;
  constructor(database: PostgresDatabase) {
    this.database = database;
  }

  async get(name: string): Promise<string | null> {
    const { rows } = await this.database.query<{ value: string }>("SELECT value FROM meta WHERE name = $1", [name]);
    return rows[0]?.value ?? null;
  }

  async set(name: string, value: string): Promise<void> {
    await this.database.query(
      "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
      [name, value],
    );
  }
}
