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

  async claim(name: string, value: string): Promise<string> {
    // A concurrent claim's insert makes this one wait and then do nothing; the read after
    // it (a new snapshot) sees the row it committed.
    await this.database.query("INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", [
      name,
      value,
    ]);
    return (await this.get(name)) ?? value;
  }

  async set(name: string, value: string): Promise<void> {
    await this.database.query(
      "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
      [name, value],
    );
  }
}
