// etcd's concurrency recipes on raftkv's client: Mutex and Election, built only on lease(), txn() and
// watch(), with etcd's semantics (clientv3/concurrency). Each contender puts a key `<prefix>/<lease id>`
// attached to its lease, in a txn that creates it only if absent; the contender whose key has the
// lowest create_revision holds the lock (leads); the others each wait for the deletion of the key with
// the next lower create_revision (no herd: one watcher per waiter). Releasing deletes the own key; a
// lease that is lost (expired: its holder died or was cut off) deletes the key through the log, which
// hands the lock on. The contenders are listed with one range over the prefix, so a prefix holds at
// most the server's maxRangeItems contenders.

import type { RaftKvClient } from "./client.ts";
import { isRetryable, RaftKvClientError } from "./errors.ts";
import type { Lease } from "./lease.ts";
import { Compare, type KeyValueRecord, Op, type TxnResult } from "./txn.ts";

import type { Bytes } from "./values.ts";

/** A contender's key under `prefix`: `<prefix>/<lease id in hex>`, as etcd names it. */
function contenderKey(prefix: string, lease: Lease): string {
  return `${prefix}${lease.id.toString(16)}`;
}

function normalized(prefix: string): string {
  return prefix.endsWith("/") ? prefix : `${prefix}/`;
}

/** The contenders under `prefix`, lowest create_revision first, and the revision they were read at. */
async function contenders(
  client: RaftKvClient,
  prefix: string,
): Promise<{ kvs: KeyValueRecord[]; revision: number }> {
  const range = await client.range(prefix);
  if (range.more)
    throw new RaftKvClientError({
      code: "TOO_LARGE",
      message: `more contenders under ${prefix} than one range returns`,
      hint: "use fewer contenders per lock or election",
    });
  return {
    kvs: [...range.items].sort((a, b) => a.createRevision - b.createRevision),
    revision: range.revision,
  };
}

function lostError(what: string, lease: Lease): RaftKvClientError {
  return new RaftKvClientError({
    code: "UNAVAILABLE",
    message: `${what}: lease ${lease.id.toString(16)} is lost (expired or revoked)`,
    hint: "grant a new lease and try again",
  });
}

/** Resolves when no contender created before `myRevision` is left under `prefix` (etcd's
 *  waitDeletes); rejects when the lease is lost meanwhile or `signal` aborts. */
async function waitForTurn(
  client: RaftKvClient,
  prefix: string,
  myRevision: number,
  lease: Lease,
  what: string,
  signal?: AbortSignal,
): Promise<void> {
  for (;;) {
    if (lease.isLostNow) throw lostError(what, lease);
    signal?.throwIfAborted();
    const { kvs, revision } = await contenders(client, prefix);
    const before = kvs.filter((kv) => kv.createRevision < myRevision);
    const last = before[before.length - 1];
    if (last === undefined) return;
    const watcher = client.watch(last.key, { startRevision: revision + 1, noPut: true });
    const aborted = (): void => watcher.close();
    signal?.addEventListener("abort", aborted, { once: true });
    try {
      const deleted = (async () => {
        for await (const e of watcher) if (e.type === "delete") return true;
        return false;
      })();
      const outcome = await Promise.race([deleted, lease.lost.then(() => "lost" as const)]);
      if (outcome === "lost") throw lostError(what, lease);
    } finally {
      watcher.close();
      signal?.removeEventListener("abort", aborted);
    }
  }
}

/** A txn that is safe to send again after an unknown outcome (its compares make a second application
 *  a no-op or a read), sent until it gets an answer: up to 5 times while the errors are retryable. */
async function commitIdempotent(send: () => Promise<TxnResult>): Promise<TxnResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await send();
    } catch (err) {
      if (!(err instanceof RaftKvClientError) || !isRetryable(err.code) || attempt >= 5) throw err;
      await new Promise((r) => setTimeout(r, 50 * attempt));
    }
  }
}

/** Creates the own key if absent; its create_revision (the contender's place in line) and value.
 *  Sent again after an unknown outcome: a second try finds the key and reads it. */
async function enter(
  client: RaftKvClient,
  key: string,
  value: Bytes,
  lease: Lease,
): Promise<{ createRevision: number; value: Uint8Array }> {
  const r = await commitIdempotent(() =>
    client
      .txn()
      .if(Compare.createRevision(key, "=", 0))
      .then(Op.put(key, value, { lease: lease.id }))
      .else(Op.get(key))
      .commit(),
  );
  if (r.succeeded)
    return {
      createRevision: r.revision,
      value: typeof value === "string" ? new TextEncoder().encode(value) : value,
    };
  const got = r.results[0];
  if (got?.type !== "get" || got.kv === null) throw new Error(`${key} vanished between compare and get`);
  return { createRevision: got.kv.createRevision, value: got.kv.value };
}

/**
 * A distributed lock (etcd's concurrency.Mutex): `const m = new Mutex(client, lease, "locks/job")`,
 * `await m.lock()`, ..., `await m.unlock()`. Held while the lease lives: if the lease is lost the lock
 * is lost too (`m.lost` resolves), and another contender gets it.
 */
export class Mutex {
  private readonly prefix: string;
  private readonly key: string;
  private myRevision = 0;

  constructor(
    private readonly client: RaftKvClient,
    private readonly lease: Lease,
    prefix: string,
  ) {
    this.prefix = normalized(prefix);
    this.key = contenderKey(this.prefix, lease);
  }

  /** The own key under the prefix. */
  get ownKey(): string {
    return this.key;
  }

  /** The own key's create_revision once lock() returned (0 before): a fencing token. */
  get revision(): number {
    return this.myRevision;
  }

  /** Resolves (with why) when the lease, and with it the lock, is lost. */
  get lost(): Promise<RaftKvClientError> {
    return this.lease.lost;
  }

  /** Waits for the lock; rejects when the lease is lost or `signal` aborts (then the own key is deleted). */
  async lock(o: { readonly signal?: AbortSignal } = {}): Promise<void> {
    const { createRevision } = await enter(this.client, this.key, "", this.lease);
    this.myRevision = createRevision;
    try {
      await waitForTurn(
        this.client,
        this.prefix,
        createRevision,
        this.lease,
        `lock ${this.prefix}`,
        o.signal,
      );
      // The lease may have run out while waiting (etcd checks the same): the key must still be ours.
      const own = await this.client.getKv(this.key);
      if (own.kv === null || own.kv.createRevision !== createRevision)
        throw lostError(`lock ${this.prefix}`, this.lease);
    } catch (err) {
      this.myRevision = 0;
      await this.client.delete(this.key).catch(() => undefined);
      throw err;
    }
  }

  /** Releases the lock (deletes the own key). */
  async unlock(): Promise<void> {
    await this.client.delete(this.key);
    this.myRevision = 0;
  }

  /** Whether the own key is still the lowest under the prefix (a check, not a guarantee after it). */
  async isOwner(): Promise<boolean> {
    const { kvs } = await contenders(this.client, this.prefix);
    return this.myRevision !== 0 && kvs[0]?.createRevision === this.myRevision && kvs[0]?.key === this.key;
  }
}

/** The leader of an election: its key, value and create_revision. */
export interface Leader {
  readonly key: string;
  readonly value: Uint8Array;
  readonly createRevision: number;
}

/**
 * Leader election (etcd's concurrency.Election): campaign() waits until this contender leads;
 * proclaim() changes the leader's value; resign() steps down; leader() and observe() read it.
 */
export class Election {
  private readonly prefix: string;
  private readonly key: string;
  private myRevision = 0;

  constructor(
    private readonly client: RaftKvClient,
    private readonly lease: Lease,
    prefix: string,
  ) {
    this.prefix = normalized(prefix);
    this.key = contenderKey(this.prefix, lease);
  }

  /** Waits until this contender leads, with `value`; rejects when the lease is lost or `signal` aborts. */
  async campaign(value: Bytes, o: { readonly signal?: AbortSignal } = {}): Promise<void> {
    const entered = await enter(this.client, this.key, value, this.lease);
    this.myRevision = entered.createRevision;
    try {
      if (!sameBytes(entered.value, value)) await this.proclaim(value);
      await waitForTurn(
        this.client,
        this.prefix,
        entered.createRevision,
        this.lease,
        `campaign ${this.prefix}`,
        o.signal,
      );
    } catch (err) {
      this.myRevision = 0;
      await this.client.delete(this.key).catch(() => undefined);
      throw err;
    }
  }

  /** Sets the leader's value; rejects unless this contender is campaigning (or leads). */
  async proclaim(value: Bytes): Promise<void> {
    const r = await commitIdempotent(() =>
      this.client
        .txn()
        .if(Compare.createRevision(this.key, "=", this.myRevision))
        .then(Op.put(this.key, value, { lease: this.lease.id }))
        .commit(),
    );
    if (this.myRevision === 0 || !r.succeeded)
      throw new RaftKvClientError({
        code: "INVALID_ARGUMENT",
        message: `election ${this.prefix}: not a candidate or leader (campaign first)`,
      });
  }

  /** Steps down (deletes the own key); the next contender leads. */
  async resign(): Promise<void> {
    if (this.myRevision === 0) return;
    await commitIdempotent(() =>
      this.client
        .txn()
        .if(Compare.createRevision(this.key, "=", this.myRevision))
        .then(Op.delete(this.key))
        .commit(),
    );
    this.myRevision = 0;
  }

  /** The leader now, or null when there is none. */
  async leader(): Promise<Leader | null> {
    const first = (await contenders(this.client, this.prefix)).kvs[0];
    return first === undefined
      ? null
      : { key: first.key, value: first.value, createRevision: first.createRevision };
  }

  /** The leader each time it changes (a new leader, or a new value), starting with the current one;
   *  null while there is none. Ends when the loop breaks or `signal` aborts. */
  async *observe(o: { readonly signal?: AbortSignal } = {}): AsyncGenerator<Leader | null, void, undefined> {
    let { kvs, revision } = await contenders(this.client, this.prefix);
    const pick = (): Leader | null => {
      const f = kvs[0];
      return f === undefined ? null : { key: f.key, value: f.value, createRevision: f.createRevision };
    };
    let last = pick();
    yield last;
    const watcher = this.client.watch(this.prefix, { prefix: true, startRevision: revision + 1 });
    const aborted = (): void => watcher.close();
    o.signal?.addEventListener("abort", aborted, { once: true });
    try {
      for await (const e of watcher) {
        const others = kvs.filter((kv) => kv.key !== e.kv.key);
        kvs =
          e.type === "delete"
            ? others
            : [...others, e.kv].sort((a, b) => a.createRevision - b.createRevision);
        revision = e.revision;
        const now = pick();
        const changed =
          (now === null) !== (last === null) ||
          (now !== null && last !== null && (now.key !== last.key || !sameBytes(now.value, last.value)));
        if (changed) {
          last = now;
          yield now;
        }
      }
    } finally {
      watcher.close();
      o.signal?.removeEventListener("abort", aborted);
    }
  }
}

function sameBytes(a: Uint8Array, b: Bytes): boolean {
  const bb = typeof b === "string" ? new TextEncoder().encode(b) : b;
  if (a.length !== bb.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== bb[i]) return false;
  return true;
}
