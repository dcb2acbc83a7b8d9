import type { FastifyError, FastifyRequest } from "fastify";
import { SCOPE_PATTERN, SCOPE_PATTERN_MEANING } from "../keys/key-rules.ts";
import { LIMIT_PATTERN } from "./schemas.ts";

/** One validation problem as the answer lists it. */
export interface ValidationProblem {
  path: string;
  message: string;
}

type Issue = NonNullable<FastifyError["validation"]>[number];

/**
 * Ajv's validation problems worded for the person who sent the request: the path to the
 * value (`body/rateLimit/limit`) and what is wrong with it, each once.
 */
export function validationProblems(error: FastifyError, request: FastifyRequest): ValidationProblem[] {
  const issues = (error.validation ?? []).map((issue) => ({
    path: `${error.validationContext ?? ""}${issue.instancePath || ""}`,
    message:
      error.validationContext === "body" &&
      !issue.instancePath &&
      (issue.keyword === "type" || issue.keyword === "minProperties")
        ? bodyShape(request, issue)
        : describeIssue(issue),
    keyword: issue.keyword,
    allowed: issue.keyword === "const" ? issue.params.allowedValue : undefined,
  }));
  return oneOfConstants(issues);
}

/** Patterns whose regular expression says little to a reader, and what they mean. */
const PATTERN_MEANINGS: Record<string, string> = {
  [LIMIT_PATTERN]: "must be a whole number from 1 to 100",
  [SCOPE_PATTERN]: SCOPE_PATTERN_MEANING,
};

/** A property name as the answer echoes it: at most 64 characters (a name can be any length). */
function shortName(name: unknown): string {
  const text = String(name);
  return text.length > 64 ? `${text.slice(0, 64)}…` : text;
}

function describeIssue(issue: Issue): string {
  if (issue.keyword === "additionalProperties")
    return `unknown property "${shortName(issue.params.additionalProperty)}"`;
  if (issue.keyword === "required") return `missing property "${String(issue.params.missingProperty)}"`;
  if (issue.keyword === "pattern") {
    const meaning = PATTERN_MEANINGS[String(issue.params.pattern)];
    if (meaning) return meaning;
  }
  return issue.message ?? issue.keyword;
}

/**
 * No body, not an object, or an empty object where the route needs a field: Ajv says only
 * "must be object" or "must NOT have fewer than 1 properties". Name what the route needs,
 * which is what the caller was missing.
 */
function bodyShape(request: FastifyRequest, issue: Issue): string {
  const schema = request.routeOptions.schema?.body as
    | { type?: unknown; required?: unknown; minProperties?: unknown; properties?: Record<string, unknown> }
    | undefined;
  if (schema?.type !== "object") return describeIssue(issue);
  const names = (list: unknown) => (Array.isArray(list) ? list.map((name) => JSON.stringify(name)) : []);
  if (issue.keyword === "minProperties") {
    return `must have at least one of ${names(Object.keys(schema.properties ?? {})).join(", ")}`;
  }
  const required = names(schema.required);
  if (required.length > 0) return `must be a JSON object with ${required.join(", ")}`;
  if (typeof schema.minProperties === "number" && schema.minProperties > 0) {
    return `must be a JSON object with at least one of ${names(Object.keys(schema.properties ?? {})).join(", ")}`;
  }
  return "must be a JSON object (send {} when no field is needed)";
}

/**
 * A choice among fixed values (a union of literals: `interval`, `delivery`, `outcome`)
 * fails in Ajv as one "must be equal to constant" per value and a closing "must match a
 * schema in anyOf", none naming a value. When those are all a path has, they become one
 * message that lists the values; a union with other kinds of branch (null, a number, an
 * object) keeps Ajv's own problems, which say more about those branches.
 */
function oneOfConstants(issues: Array<ValidationProblem & { keyword: string; allowed: unknown }>): ValidationProblem[] {
  const keywords = new Map<string, Set<string>>();
  for (const issue of issues) {
    const seen = keywords.get(issue.path) ?? new Set<string>();
    seen.add(issue.keyword);
    keywords.set(issue.path, seen);
  }
  const isChoice = (path: string) => {
    const seen = keywords.get(path);
    return seen !== undefined && seen.size === 2 && seen.has("const") && seen.has("anyOf");
  };
  const problems: ValidationProblem[] = [];
  const allowed = new Map<string, unknown[]>();
  for (const issue of issues) {
    if (!isChoice(issue.path)) {
      problems.push({ path: issue.path, message: issue.message });
    } else if (issue.keyword === "const") {
      const values = allowed.get(issue.path) ?? [];
      values.push(issue.allowed);
      allowed.set(issue.path, values);
    } else {
      const values = (allowed.get(issue.path) ?? []).map((value) => JSON.stringify(value)).join(", ");
      problems.push({ path: issue.path, message: `must be one of ${values}` });
    }
  }
  return problems;
}
