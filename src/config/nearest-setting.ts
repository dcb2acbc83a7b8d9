/**
 * The known setting a misspelt GATEHOUSE_ name most likely meant, so the warning can say
 * "did you mean GATEHOUSE_PORT?" rather than leave the operator to compare names by eye.
 * Close means at most two single-letter edits (GATEHOUSE_PROT, GATEHOUSE_MASTERKEY) or the
 * same letters in another order; the closest wins, ties by name so the answer is stable.
 * Returns null when nothing is close: a wrong guess would mislead more than no guess.
 */
export function nearestSetting(name: string, known: Iterable<string>): string | null {
  let best: { name: string; distance: number } | null = null;
  for (const candidate of known) {
    const distance = editDistance(name, candidate);
    if (distance > 2 && !sameLetters(name, candidate)) continue;
    if (best === null || distance < best.distance || (distance === best.distance && candidate < best.name)) {
      best = { name: candidate, distance };
    }
  }
  return best?.name ?? null;
}

/** Levenshtein distance: insertions, deletions and substitutions, one row at a time. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

function sameLetters(a: string, b: string): boolean {
  const sorted = (text: string) => [...text].sort().join("");
  return a.length === b.length && sorted(a) === sorted(b);
}
