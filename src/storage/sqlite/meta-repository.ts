import type { MetaRepository } from "../types.ts";
import type { SqliteDatabase } from "./database.ts";

export class SqliteMetaRepository implements MetaRepository {
  private readonly database: SqliteDatabase;
  constructor(database: SqliteDatabase) {
    this.database = database;
  }

  async get(name: string): Promise<string | null> {
    const row = this.database.statement("SELECT value FROM meta WHERE name = ?").get(name) as
      | { value: string }
      | undefined;
    return row?.value ?? null;
  }

  async claim(name: string, value: string): Promise<string> {
    this.database
      .statement("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING")
      .run(name, value);
    return (await this.get(name)) ?? value;
  }

  async set(name: string, value: string): Promise<void> {
    this.database
      .statement("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value")
      .run(name, value);
  }
}
