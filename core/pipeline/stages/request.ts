/**
 * The body: parsed once, validated by the route's own validator, then routed. What the
 * client sends is refused here, before dispatch, so its bytes never count against a
 * provider.
 */
import { duplicateModelKey } from "../../json-splice.js";
import { targetsFor, type Router } from "../../routing.js";
import { codeNumber, CONTINUE } from "../codes.js";
import type { Stage } from "../pipeline.js";
import type { RequestState } from "../state.js";

const E_JSON = codeNumber("GW_ERR_REQ_INVALID_JSON");
const E_VALIDATION = codeNumber("GW_ERR_REQ_VALIDATION");
const E_NO_ROUTE = codeNumber("GW_ERR_MODEL_NOT_FOUND");

export const parseStage: Stage = {
  name: "parse",
  run(s) {
    const body = s.body!;
    if (body.length === 0) {
      s.errMessage = "request body is empty; expected a JSON object";
      return E_JSON;
    }
    const text = body.toString("utf8");
    try {
      s.parsed = JSON.parse(text) as Record<string, unknown>;
    } catch (e) {
      s.errMessage = `request body is not valid JSON: ${(e as Error).message}`;
      return E_JSON;
    }
    // JSON.parse keeps the last "model", an upstream may keep the first: the key allowlist,
    // pricing and routing must see the model the upstream serves, so refuse the ambiguity.
    if (duplicateModelKey(text, body)) {
      s.errMessage = "model: appears more than once in the request body";
      return E_VALIDATION;
    }
    return CONTINUE;
  },
  settle: null,
};

/** The route's validator (core/validate.ts or the OpenAI one): null = valid, else the message. */
export function validateStage(validate: (parsed: unknown) => string | null): Stage {
  return {
    name: "validate",
    run(s) {
      const err = validate(s.parsed);
      if (err === null) return CONTINUE;
      s.errMessage = err;
      return E_VALIDATION;
    },
    settle: null,
  };
}

/** The model's route and the order to try its targets (per session for deployments). */
export function routeStage(router: Router): Stage {
  return {
    name: "route",
    run(s) {
      const parsed = s.parsed!;
      const model = parsed.model as string;
      s.model = model;
      // The developer (metadata.user_id, as Claude Code sends it) for the ledger, traces and
      // per-user metrics; recorded even when the model has no route.
      const uid = (parsed.metadata as { user_id?: unknown } | undefined)?.user_id;
      if (typeof uid === "string" && uid !== "") s.userId = uid.length > 200 ? uid.slice(0, 200) : uid;
      const r = router.resolve(model);
      if (r === null) {
        s.errMessage = `model ${JSON.stringify(model).slice(0, 200)} has no route and no default provider is set`;
        return E_NO_ROUTE;
      }
      s.resolved = r;
      s.targets = r.pool === null ? r.targets : targetsFor(r, sessionOf(s), s.t0);
      return CONTINUE;
    },
    settle: null,
  };
}

/** The session a request belongs to: x-claude-code-session-id, else metadata.user_id; "" if none. */
function sessionOf(s: RequestState): string {
  const fwd = s.fwd;
  for (let i = 0; i < fwd.length; i += 2) if (fwd[i] === "x-claude-code-session-id") return fwd[i + 1]!;
  const uid = (s.parsed!.metadata as { user_id?: unknown } | undefined)?.user_id;
  return typeof uid === "string" ? uid : "";
}
