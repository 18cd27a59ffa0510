// The state tree as the library shows it: ordering, collapsing and filtering. Pure functions over
// the flat `NodeView[]` that `list_tree` returns.
import type { NodeId, NodeKind, NodeView } from "../../lib/api";

/** Children of each node (key null: the roots), in display order. */
export function childrenOf(nodes: NodeView[]): Map<NodeId | null, NodeView[]> {
  const ids = new Set(nodes.map((n) => n.id));
  const map = new Map<NodeId | null, NodeView[]>();
  for (const n of nodes) {
    // A parent missing from the list (filtered out, or deleted meanwhile) makes the node a root.
    const key = n.parent !== null && ids.has(n.parent) ? n.parent : null;
    const list = map.get(key);
    if (list) list.push(n);
    else map.set(key, [n]);
  }
  for (const list of map.values()) list.sort(siblingOrder);
  return map;
}

/**
 * A whole-node fork nothing was added to yet: no children, and its state is its parent's (no bytes
 * of its own). Freezing on it fills it in place instead of adding a child.
 */
export function emptyBranches(nodes: NodeView[]): Set<NodeId> {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const parents = new Set(nodes.map((n) => n.parent));
  const out = new Set<NodeId>();
  for (const n of nodes) {
    const parent = n.parent === null ? undefined : byId.get(n.parent);
    if (parent && n.own_bytes === 0 && parent.token_count === n.token_count && !parents.has(n.id)) out.add(n.id);
  }
  return out;
}

export function isEmptyBranch(nodes: NodeView[], id: NodeId): boolean {
  return emptyBranches(nodes).has(id);
}

/** Pinned first, then oldest first, so branches keep their place as the tree grows. */
export function siblingOrder(a: NodeView, b: NodeView): number {
  if (a.pinned !== b.pinned) return a.pinned ? -1 : 1;
  if (a.created_at !== b.created_at) return a.created_at - b.created_at;
  return a.id - b.id;
}

/**
 * Depth-first order with `depth` recomputed from the parent links. The backend already sends this
 * order; redoing it keeps the view right after local edits (pin, move) before the next refresh.
 */
export function orderTree(nodes: NodeView[]): NodeView[] {
  const kids = childrenOf(nodes);
  const out: NodeView[] = [];
  const seen = new Set<NodeId>();
  const visit = (n: NodeView, depth: number) => {
    if (seen.has(n.id)) return; // a cycle would be a backend bug; never loop on it
    seen.add(n.id);
    out.push(n.depth === depth ? n : { ...n, depth });
    for (const c of kids.get(n.id) ?? []) visit(c, depth + 1);
  };
  for (const root of kids.get(null) ?? []) visit(root, 0);
  return out;
}

/** Rows to show when the nodes in `collapsed` hide their descendants. Expects `orderTree` output. */
export function visibleRows(ordered: NodeView[], collapsed: ReadonlySet<NodeId>): NodeView[] {
  const out: NodeView[] = [];
  let hideBelow: number | null = null;
  for (const n of ordered) {
    if (hideBelow !== null) {
      if (n.depth > hideBelow) continue;
      hideBelow = null;
    }
    out.push(n);
    if (collapsed.has(n.id)) hideBelow = n.depth;
  }
  return out;
}

export function hasChildren(nodes: NodeView[]): Set<NodeId> {
  return new Set(nodes.flatMap((n) => (n.parent === null ? [] : [n.parent])));
}

export type TreeFilter = { kind: NodeKind | null; tag: string | null; text: string };

export const noFilter = (): TreeFilter => ({ kind: null, tag: null, text: "" });

export function isFiltering(f: TreeFilter): boolean {
  return f.kind !== null || f.tag !== null || f.text.trim() !== "";
}

/**
 * The nodes that pass the filter, in tree order. `hits` are the ids `search` returned for the text
 * (null while no text is typed): the text match is the backend's, kind and tag are checked here.
 */
export function filterNodes(
  ordered: NodeView[],
  f: TreeFilter,
  hits: ReadonlySet<NodeId> | null,
): NodeView[] {
  return ordered.filter(
    (n) =>
      (f.kind === null || n.kind === f.kind) &&
      (f.tag === null || n.tags.includes(f.tag)) &&
      (hits === null || hits.has(n.id)),
  );
}

/** Every tag in use, sorted, for the tag filter. */
export function allTags(nodes: NodeView[]): string[] {
  return [...new Set(nodes.flatMap((n) => n.tags))].sort((a, b) => a.localeCompare(b));
}

/** The root of the tree that holds `id`. */
export function rootOf(nodes: NodeView[], id: NodeId): NodeId {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  let current = byId.get(id);
  const seen = new Set<NodeId>();
  while (current && current.parent !== null && byId.has(current.parent) && !seen.has(current.id)) {
    seen.add(current.id);
    current = byId.get(current.parent);
  }
  return current?.id ?? id;
}

/** `id` and everything below it. */
export function subtreeIds(nodes: NodeView[], id: NodeId): Set<NodeId> {
  const kids = childrenOf(nodes);
  const out = new Set<NodeId>();
  const stack = [id];
  while (stack.length) {
    const cur = stack.pop()!;
    if (out.has(cur)) continue;
    out.add(cur);
    for (const c of kids.get(cur) ?? []) stack.push(c.id);
  }
  return out;
}

/** Nodes a node may be moved under: anything outside its own subtree. */
export function moveTargets(nodes: NodeView[], id: NodeId): NodeView[] {
  const blocked = subtreeIds(nodes, id);
  return orderTree(nodes).filter((n) => !blocked.has(n.id));
}

/** Why a node from another model cannot be thawed, in words. */
export function incompatibleReason(node: NodeView, modelName: string | null): string {
  const loaded = modelName ? `the open model is ${modelName}` : "it does not match the open model";
  return `Made with ${node.model_name}; ${loaded}. Open ${node.model_name} to thaw it.`;
}
