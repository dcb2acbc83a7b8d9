import { createHash } from "node:crypto";
import { type ActorContext, auditEvent } from "../audit/context.ts";
import type { Gatehouse } from "../gatehouse.ts";
import { digestKey, isWellFormedKey, keyHint } from "../keys/key-format.ts";
import { keyStatus } from "../keys/key-status.ts";
import { storableText } from "../lib/storable-text.ts";

export interface LeakedToken {
  token: string;
  type?: string;
  url?: string;
  source?: string;
}

export interface LeakVerdict {
  tokenHash: string;
  tokenType: string;
  label: "true_positive" | "false_positive";
  /** What we did: revoked now, was already inactive, or not ours. */
  action: "revoked" | "already_inactive" | "unknown";
}

/**
 * Handles a report of keys seen in public: every report is audited; a key we issued is
 * revoked at once if still active (a leaked key cannot be trusted for a grace period).
 * "true_positive" means the token is a key Gatehouse issued, whatever its state now.
 */
export async function handleLeakReport(
  gatehouse: Gatehouse,
  tokens: readonly LeakedToken[],
  context: ActorContext,
): Promise<LeakVerdict[]> {
  const verdicts: LeakVerdict[] = [];
  for (const item of tokens) {
    const tokenHash = createHash("sha256").update(item.token).digest("hex");
    const tokenType = item.type ?? "gatehouse_api_key";
    const record = isWellFormedKey(item.token, gatehouse.config.keys.prefix)
      ? await gatehouse.storage.keys.findByDigest(digestKey(item.token))
      : null;
    // Replaced, not refused: a 400 would leave every key in the report unrevoked, and
    // GitHub cannot fix what it found. Kept as it was, PostgreSQL refused the event.
    const where = {
      source: item.source === undefined ? null : storableText(item.source),
      url: item.url === undefined ? null : storableText(item.url),
    };
    if (!record) {
      gatehouse.audit.record(
        auditEvent(context, gatehouse.clock(), {
          action: "key.leak_report",
          outcome: "failure",
          detail: { ...where, result: "unknown token", tokenHash },
        }),
      );
      verdicts.push({ tokenHash, tokenType, label: "false_positive", action: "unknown" });
      continue;
    }
    if (keyStatus(record, gatehouse.clock()) === "active") {
      await gatehouse.keys.revoke(record.id, "leaked: reported by secret scanning", {
        context,
        permissions: null,
      });
      verdicts.push({ tokenHash, tokenType, label: "true_positive", action: "revoked" });
    } else {
      verdicts.push({ tokenHash, tokenType, label: "true_positive", action: "already_inactive" });
    }
    gatehouse.audit.record(
      auditEvent(context, gatehouse.clock(), {
        action: "key.leak_report",
        outcome: "success",
        targetType: "key",
        targetId: record.id,
        detail: { ...where, hint: keyHint(item.token), result: verdicts.at(-1)?.action },
      }),
    );
  }
  return verdicts;
}
