/**
 * The cheap refusals that need only the request line and headers: conflicting framing,
 * a draining gateway, load shedding, the content type and an announced body over the cap.
 */
import type { Metrics } from "../../metrics.js";
import { SHED_NONE, type Shedder } from "../../shedder.js";
import { isJsonContentType } from "../../validate.js";
import { codeNumber, CONTINUE } from "../codes.js";
import type { Stage } from "../pipeline.js";
import type { RequestState } from "../state.js";

const RETRY_AFTER_1 = ["retry-after", "1"];
const E_CONTENT_LENGTH = codeNumber("GW_ERR_REQ_CONTENT_LENGTH");
const E_DRAINING = codeNumber("GW_ERR_SERVER_DRAINING");
const E_SHED = codeNumber("GW_ERR_SHED_OVERLOADED");
const E_CONTENT_TYPE = codeNumber("GW_ERR_REQ_CONTENT_TYPE");
export const E_BODY_TOO_LARGE = codeNumber("GW_ERR_REQ_BODY_TOO_LARGE");

/**
 * Framing first: with two different lengths, a proxy in front may have framed the body by
 * the other one (request smuggling). Refuse and close.
 */
export const framingStage: Stage = {
  name: "framing",
  run(s) {
    if (!s.lengthConflict) return CONTINUE;
    s.errClose = true;
    return E_CONTENT_LENGTH;
  },
  settle: null,
};

/**
 * A request on a connection opened before the drain signal: the upstream pools are
 * closing, so it must not go out (nor touch a breaker); the client retries elsewhere.
 */
export function drainingStage(flags: { readonly draining: boolean }): Stage {
  return {
    name: "draining",
    run(s) {
      if (!flags.draining) return CONTINUE;
      s.errClose = true;
      s.errHeaders = RETRY_AFTER_1;
      return E_DRAINING;
    },
    settle: null,
  };
}

/** Load shedding: the cheapest refusal, before any other work (core/shedder.ts). */
export function shedStage(shedder: Shedder, metrics: Metrics): Stage {
  return {
    name: "shed",
    run(s) {
      const v = shedder.check();
      if (v === SHED_NONE) return CONTINUE;
      metrics.rejected(v - 1); // SHED_HEAP.. map onto REJECT_REASONS 0..
      s.errHeaders = RETRY_AFTER_1;
      return E_SHED;
    },
    settle: null,
  };
}

/** Every admitted /v1/messages (or chat) call gets a ledger row from here on, refusals included. */
export function contentTypeStage(ledger: boolean): Stage {
  return {
    name: "content-type",
    run(s: RequestState) {
      if (ledger) s.ledger = true;
      if (isJsonContentType(s.contentType)) return CONTINUE;
      const got = s.contentType === "" ? "none" : JSON.stringify(s.contentType.slice(0, 100));
      s.errMessage = `content-type must be application/json, got ${got}`;
      return E_CONTENT_TYPE;
    },
    settle: null,
  };
}

/** An announced length over MAX_BODY_BYTES: the server answers 413 and drops the body (bounded). */
export function lengthStage(maxBodyBytes: number): Stage {
  return {
    name: "length",
    run(s) {
      if (s.contentLength <= maxBodyBytes) return CONTINUE;
      s.errMessage = `request body of ${s.contentLength} bytes exceeds the limit of ${maxBodyBytes}`;
      return E_BODY_TOO_LARGE;
    },
    settle: null,
  };
}
