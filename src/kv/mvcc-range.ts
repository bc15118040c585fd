// The options of an etcd Range applied to the keys a range matched (in key order): the min/max revision
// filters, sort, limit, keys_only, count_only and the server's bounds, in etcd's order (etcdserver
// apply.go: count before the filters, filters, sort, limit, then `more`).

import { unreachable } from "../lib/assert.ts";
import { compareBytes } from "../store/store.ts";
import type { KeyValue, RangeRequest, RangeResult, SortOrder, SortTarget } from "./mvcc-types.ts";

const EMPTY = new Uint8Array(0);

export interface RangeLimits {
  readonly maxItems: number;
  readonly maxBytes: number;
}

function filtered(r: RangeRequest): boolean {
  return r.minModRevision > 0 || r.maxModRevision > 0 || r.minCreateRevision > 0 || r.maxCreateRevision > 0;
}

function keep(r: RangeRequest, kv: KeyValue): boolean {
  if (r.maxModRevision > 0 && kv.modRevision > r.maxModRevision) return false;
  if (r.minModRevision > 0 && kv.modRevision < r.minModRevision) return false;
  if (r.maxCreateRevision > 0 && kv.createRevision > r.maxCreateRevision) return false;
  return !(r.minCreateRevision > 0 && kv.createRevision < r.minCreateRevision);
}

/** A RangeRequest for [key, rangeEnd) with etcd's defaults (the current revision, no limit, key order)
 *  and any option changed. */
export function rangeRequest(
  key: Uint8Array,
  rangeEnd: Uint8Array = EMPTY,
  o: Partial<RangeRequest> = {},
): RangeRequest {
  return {
    key,
    rangeEnd,
    limit: 0,
    revision: 0,
    sortOrder: "none",
    sortTarget: "key",
    keysOnly: false,
    countOnly: false,
    minModRevision: 0,
    maxModRevision: 0,
    minCreateRevision: 0,
    maxCreateRevision: 0,
    ...o,
  };
}

/** etcd: a target other than the key sorts ascending by default; key ascending is the natural order. */
export function effectiveOrder(order: SortOrder, target: SortTarget): SortOrder {
  if (target !== "key" && order === "none") return "ascend";
  if (target === "key" && order === "ascend") return "none";
  return order;
}

function compareBy(target: SortTarget, a: KeyValue, b: KeyValue): number {
  switch (target) {
    case "key":
      return compareBytes(a.key, b.key);
    case "version":
      return a.version - b.version;
    case "create":
      return a.createRevision - b.createRevision;
    case "mod":
      return a.modRevision - b.modRevision;
    case "value":
      return compareBytes(a.value, b.value);
    default:
      return unreachable(target);
  }
}

/** The answer to `request` from the matched keys `kvs` (key order). Ties of a sort keep key order. */
export function finishRange(
  kvs: Iterable<KeyValue>,
  request: RangeRequest,
  limits: RangeLimits,
): RangeResult {
  const order = effectiveOrder(request.sortOrder, request.sortTarget);
  const gatherAll = order !== "none" || filtered(request);
  let cap = Number.POSITIVE_INFINITY;
  if (request.countOnly) cap = 0;
  else if (!gatherAll) cap = Math.min(request.limit > 0 ? request.limit + 1 : cap, limits.maxItems + 1);
  let count = 0;
  let out: KeyValue[] = [];
  for (const kv of kvs) {
    count++;
    if (out.length < cap) out.push(kv);
  }
  if (filtered(request)) out = out.filter((kv) => keep(request, kv));
  if (order !== "none") {
    const sign = order === "descend" ? -1 : 1;
    out.sort((a, b) => sign * compareBy(request.sortTarget, a, b));
  }
  let more = false;
  if (request.limit > 0 && out.length > request.limit) {
    out.length = request.limit;
    more = true;
  }
  let bytes = 0;
  for (let i = 0; i < out.length; i++) {
    const kv = out[i]!;
    bytes += kv.key.length + (request.keysOnly ? 0 : kv.value.length);
    if (i >= limits.maxItems || (i > 0 && bytes > limits.maxBytes)) {
      out.length = i;
      more = true;
      break;
    }
  }
  const kvsOut = request.keysOnly ? out.map((kv) => ({ ...kv, value: EMPTY })) : out;
  return { kvs: kvsOut, more, count };
}
