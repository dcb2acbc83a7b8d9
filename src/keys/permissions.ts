/**
 * Gatehouse's own permissions, carried by admin keys. They live in a field of their own
 * (`permissions`), apart from the customer-defined `scopes`, so that a customer scope
 * that happens to read `keys:write` never grants power over Gatehouse itself.
 */
export const PERMISSIONS = [
  "keys:read",
  "keys:write",
  "keys:verify",
  "audit:read",
  "users:read",
  "users:write",
  "metrics:read",
] as const;

export type Permission = (typeof PERMISSIONS)[number];

export function isPermission(value: string): value is Permission {
  return (PERMISSIONS as readonly string[]).includes(value);
}

/** Permissions in `wanted` that `held` does not include. */
export function missingPermissions(held: readonly string[], wanted: readonly string[]): string[] {
  return wanted.filter((permission) => !held.includes(permission));
}
