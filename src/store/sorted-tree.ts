// A persistent (immutable) ordered map from byte keys to values: a treap with path copying, so a
// snapshot of the whole map is one pointer and costs nothing until the map changes (O(log n) new nodes
// per change). The in-memory Store twin and the LMDB store's overlay of uncommitted writes use it.
// Priorities are a hash of the key, so the shape depends only on the contents (deterministic).

import { compareBytes, type ScanOptions } from "./store.ts";

export interface TreeNode<V> {
  readonly key: Uint8Array;
  readonly value: V;
  readonly priority: number;
  readonly left: TreeNode<V> | null;
  readonly right: TreeNode<V> | null;
}

export type Tree<V> = TreeNode<V> | null;

/** FNV-1a of the key: a priority that needs no random source. */
function priorityOf(key: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i]!, 0x01000193);
  return h >>> 0;
}

function node<V>(key: Uint8Array, value: V, priority: number, left: Tree<V>, right: Tree<V>): TreeNode<V> {
  return { key, value, priority, left, right };
}

export function treeGet<V>(t: Tree<V>, key: Uint8Array): V | undefined {
  while (t !== null) {
    const c = compareBytes(key, t.key);
    if (c === 0) return t.value;
    t = c < 0 ? t.left : t.right;
  }
  return undefined;
}

/** The tree with `key` set to `value`. */
export function treeSet<V>(t: Tree<V>, key: Uint8Array, value: V): TreeNode<V> {
  return insert(t, key, value, priorityOf(key));
}

function insert<V>(t: Tree<V>, key: Uint8Array, value: V, priority: number): TreeNode<V> {
  if (t === null) return node(key, value, priority, null, null);
  const c = compareBytes(key, t.key);
  if (c === 0) return node(t.key, value, t.priority, t.left, t.right);
  if (c < 0) {
    const left = insert(t.left, key, value, priority);
    if (left.priority > t.priority) {
      // Rotate right: the new child rises above t.
      return node(
        left.key,
        left.value,
        left.priority,
        left.left,
        node(t.key, t.value, t.priority, left.right, t.right),
      );
    }
    return node(t.key, t.value, t.priority, left, t.right);
  }
  const right = insert(t.right, key, value, priority);
  if (right.priority > t.priority) {
    return node(
      right.key,
      right.value,
      right.priority,
      node(t.key, t.value, t.priority, t.left, right.left),
      right.right,
    );
  }
  return node(t.key, t.value, t.priority, t.left, right);
}

/** The tree without `key` (the same tree when it is absent). */
export function treeDelete<V>(t: Tree<V>, key: Uint8Array): Tree<V> {
  if (t === null) return null;
  const c = compareBytes(key, t.key);
  if (c === 0) return merge(t.left, t.right);
  if (c < 0) {
    const left = treeDelete(t.left, key);
    return left === t.left ? t : node(t.key, t.value, t.priority, left, t.right);
  }
  const right = treeDelete(t.right, key);
  return right === t.right ? t : node(t.key, t.value, t.priority, t.left, right);
}

/** Joins two trees whose keys are all below (a) and above (b) each other. */
function merge<V>(a: Tree<V>, b: Tree<V>): Tree<V> {
  if (a === null) return b;
  if (b === null) return a;
  if (a.priority > b.priority) return node(a.key, a.value, a.priority, a.left, merge(a.right, b));
  return node(b.key, b.value, b.priority, merge(a, b.left), b.right);
}

export function treeSize<V>(t: Tree<V>): number {
  let n = 0;
  const stack: TreeNode<V>[] = [];
  for (let x = t; x !== null || stack.length > 0; ) {
    if (x !== null) {
      stack.push(x);
      x = x.left;
    } else {
      const top = stack.pop()!;
      n++;
      x = top.right;
    }
  }
  return n;
}

/** Nodes within [start, end) in key order (descending when reverse), lazily; `limit` is the caller's. */
export function* treeScan<V>(t: Tree<V>, o: ScanOptions = {}): Generator<TreeNode<V>, void, undefined> {
  const stack: TreeNode<V>[] = [];
  const { start, end } = o;
  if (o.reverse !== true) {
    // Push the path of nodes >= start: the top is the lowest such node.
    for (let x = t; x !== null; ) {
      if (start === undefined || compareBytes(x.key, start) >= 0) {
        stack.push(x);
        x = x.left;
      } else x = x.right;
    }
    while (stack.length > 0) {
      const n = stack.pop()!;
      if (end !== undefined && compareBytes(n.key, end) >= 0) return;
      yield n;
      for (let x = n.right; x !== null; x = x.left) stack.push(x);
    }
    return;
  }
  for (let x = t; x !== null; ) {
    if (end === undefined || compareBytes(x.key, end) < 0) {
      stack.push(x);
      x = x.right;
    } else x = x.left;
  }
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (start !== undefined && compareBytes(n.key, start) < 0) return;
    yield n;
    for (let x = n.left; x !== null; x = x.right) stack.push(x);
  }
}
