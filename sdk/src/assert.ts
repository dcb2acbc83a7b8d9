/**
 * Checks for untrusted JSON (oauth4webapi style): each helper either proves the type to
 * the compiler or throws, so answers from the network are never cast. The thrown
 * `TypeError` names the field; callers wrap it in a `VerifierError`.
 */
export type JsonObject = Record<string, unknown>;

export function assertObject(value: unknown, name: string): asserts value is JsonObject {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new TypeError(`${name} must be a JSON object`);
  }
}

export function assertString(value: unknown, name: string): asserts value is string {
  if (typeof value !== "string") throw new TypeError(`${name} must be a string`);
}

export function assertNullableString(value: unknown, name: string): asserts value is string | null {
  if (value !== null && typeof value !== "string") throw new TypeError(`${name} must be a string or null`);
}

export function assertBoolean(value: unknown, name: string): asserts value is boolean {
  if (typeof value !== "boolean") throw new TypeError(`${name} must be a boolean`);
}

export function assertInteger(value: unknown, name: string): asserts value is number {
  if (!Number.isSafeInteger(value)) throw new TypeError(`${name} must be an integer`);
}

export function assertStringArray(value: unknown, name: string): asserts value is string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string")) {
    throw new TypeError(`${name} must be an array of strings`);
  }
}

export function assertOneOf<T extends string>(value: unknown, allowed: readonly T[], name: string): asserts value is T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    throw new TypeError(`${name} must be one of ${allowed.join(", ")}`);
  }
}
