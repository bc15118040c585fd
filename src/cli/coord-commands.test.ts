// etcdctl's txn input format, request-line splitting and lease ids, as `raftkv txn` and `lease` read them.

import assert from "node:assert/strict";
import { test } from "node:test";
import * as t from "../client/txn.ts";
import { RaftKvError } from "../lib/errors.ts";
import { parseCompare, parseLeaseId, parseRequest, parseTxn, words } from "./coord-commands.ts";

const usage = (fn: () => unknown, message: RegExp) =>
  assert.throws(
    fn,
    (e: unknown) => e instanceof RaftKvError && e.code === "INVALID_ARGUMENT" && message.test(e.message),
  );

test("words: quotes group, escapes in double quotes", () => {
  assert.deepEqual(words(`put k "a b" 'c d'`), ["put", "k", "a b", "c d"]);
  assert.deepEqual(words(`put "k\\"q" v`), ["put", 'k"q', "v"]);
});

test("compares as etcdctl writes them", () => {
  assert.deepEqual(parseCompare('mod("k") > "0"', t), t.Compare.modRevision("k", ">", 0));
  assert.deepEqual(parseCompare('val("k") = "a b"', t), t.Compare.value("k", "=", "a b"));
  assert.deepEqual(parseCompare('ver("k") != "2"', t), t.Compare.version("k", "!=", 2));
  assert.deepEqual(parseCompare('c("k") < "9"', t), t.Compare.createRevision("k", "<", 9));
  assert.deepEqual(parseCompare('lease("k") = "1f"', t), t.Compare.lease("k", "=", 31n));
  usage(() => parseCompare("mod(k) > 0", t), /bad compare/);
  usage(() => parseCompare('size("k") = "1"', t), /unknown compare target size/);
  usage(() => parseCompare('mod("k") = "x"', t), /not a number/);
});

test("requests: put with --lease=, get and del with --prefix", () => {
  assert.deepEqual(parseRequest('put k "v 1" --lease=a', t), t.Op.put("k", "v 1", { lease: 10n }));
  assert.deepEqual(parseRequest("get k", t), t.Op.get("k"));
  assert.deepEqual(parseRequest("get p/ --prefix", t), t.Op.range("p/"));
  assert.deepEqual(parseRequest("del p/ --prefix", t), t.Op.deletePrefix("p/"));
  usage(() => parseRequest("put k", t), /put KEY VALUE/);
  usage(() => parseRequest("get k --rev=3", t), /unknown flag --rev=3/);
  usage(() => parseRequest("watch k", t), /requests are put, get or del/);
});

test("sections: compares, success, failure; blank lines separate them", () => {
  const p = parseTxn('mod("a") > "0"\n\nput a 1\nput b 2\n\ndel a\n', t);
  assert.deepEqual([p.compares.length, p.success.length, p.failure.length], [1, 2, 1]);
  const only = parseTxn("\nput a 1\n", t);
  assert.deepEqual([only.compares.length, only.success.length, only.failure.length], [0, 1, 0]);
  usage(() => parseTxn("\n\n\n\nput a 1\n", t), /more than three sections/);
});

test("lease ids are hex, 0x optional, never 0", () => {
  assert.equal(parseLeaseId("694d7d5f6d0a2b0c"), 0x694d7d5f6d0a2b0cn);
  assert.equal(parseLeaseId("0xFF"), 255n);
  usage(() => parseLeaseId("zz"), /not a hexadecimal lease id/);
  usage(() => parseLeaseId("0"), /is 0/);
  usage(() => parseLeaseId("12345678901234567"), /not a hexadecimal/);
});
