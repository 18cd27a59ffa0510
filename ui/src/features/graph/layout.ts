// Loom-style map of the tree: depth runs left to right, each leaf gets its own row, and a parent
// sits level with the middle of its children. Several trees (the whole library) are stacked, each
// below the previous one. Deterministic, so the map does not jump between refreshes; O(n log n)
// (the sibling sort) and iterative, so a chain thousands of levels deep cannot overflow the stack.
import type { NodeId, NodeView } from "../../lib/api";
import { childrenOf } from "../library/tree";

export type Placed = { node: NodeView; x: number; y: number; col: number; row: number };
export type Edge = { from: NodeId; to: NodeId; path: string };
export type GraphLayout = {
  /** In post-order (children before their parent), tree after tree. */
  placed: Placed[];
  edges: Edge[];
  width: number;
  height: number;
  /** The trees' roots, top to bottom. */
  roots: NodeId[];
  at: Map<NodeId, Placed>;
  /** Parent and children as mapped (a mapped subtree's root has no parent here). */
  parent: Map<NodeId, NodeId>;
  children: Map<NodeId, NodeId[]>;
};

/**
 * `x` of a placed node is its left edge, `y` its vertical middle; edges run right edge to left
 * edge. `treeGap` is the extra space between stacked trees, in rows.
 */
export type Spacing = {
  colWidth: number;
  rowHeight: number;
  margin: number;
  nodeWidth: number;
  nodeHeight: number;
  treeGap: number;
};
export const SPACING: Spacing = {
  colWidth: 256,
  rowHeight: 74,
  margin: 24,
  nodeWidth: 208,
  nodeHeight: 60,
  treeGap: 0.5,
};

const empty = (): GraphLayout => ({
  placed: [],
  edges: [],
  width: 0,
  height: 0,
  roots: [],
  at: new Map(),
  parent: new Map(),
  children: new Map(),
});

/** One tree: `rootId` and everything below it. */
export function layoutTree(nodes: NodeView[], rootId: NodeId, spacing: Spacing = SPACING): GraphLayout {
  return layoutTrees(nodes, [rootId], spacing);
}

/** The whole library: every root's tree, stacked in display order. */
export function layoutForest(nodes: NodeView[], spacing: Spacing = SPACING): GraphLayout {
  const kids = childrenOf(nodes);
  return place(nodes, kids, (kids.get(null) ?? []).map((n) => n.id), spacing);
}

/** The trees below `rootIds`, each below the previous one; unknown ids are skipped. */
export function layoutTrees(nodes: NodeView[], rootIds: NodeId[], spacing: Spacing = SPACING): GraphLayout {
  return place(nodes, childrenOf(nodes), rootIds, spacing);
}

type Frame = { node: NodeView; col: number; kids: NodeView[]; next: number; first: number; last: number };

function place(
  nodes: NodeView[],
  kids: Map<NodeId | null, NodeView[]>,
  rootIds: NodeId[],
  spacing: Spacing,
): GraphLayout {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const { colWidth, rowHeight, margin, nodeWidth, nodeHeight, treeGap } = spacing;
  const out = empty();
  const seen = new Set<NodeId>();
  let nextRow = 0;
  let maxCol = 0;

  for (const rootId of rootIds) {
    const root = byId.get(rootId);
    if (!root || seen.has(rootId)) continue;
    if (out.roots.length > 0) nextRow += treeGap;
    out.roots.push(rootId);
    seen.add(rootId);
    // Post-order without recursion: leaves take the next free row, parents the midpoint of their
    // first and last child. `first` is NaN until a child has been placed.
    const stack: Frame[] = [frame(root, 0, kids)];
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      if (top.next < top.kids.length) {
        const child = top.kids[top.next++];
        if (seen.has(child.id)) continue; // a cycle or a repeat would be a backend bug
        seen.add(child.id);
        out.parent.set(child.id, top.node.id);
        stack.push(frame(child, top.col + 1, kids));
        continue;
      }
      stack.pop();
      const row = Number.isNaN(top.first) ? nextRow++ : (top.first + top.last) / 2;
      const parent = stack[stack.length - 1];
      if (parent) {
        if (Number.isNaN(parent.first)) parent.first = row;
        parent.last = row;
      }
      maxCol = Math.max(maxCol, top.col);
      const p: Placed = {
        node: top.node,
        col: top.col,
        row,
        x: margin + top.col * colWidth,
        y: margin + nodeHeight / 2 + row * rowHeight,
      };
      out.placed.push(p);
      out.at.set(top.node.id, p);
    }
  }
  if (out.placed.length === 0) return out;

  for (const p of out.placed) {
    const from = out.parent.get(p.node.id);
    if (from === undefined) continue;
    const list = out.children.get(from);
    if (list) list.push(p.node.id);
    else out.children.set(from, [p.node.id]);
    const parent = out.at.get(from)!;
    const startX = parent.x + nodeWidth;
    const midX = (startX + p.x) / 2;
    out.edges.push({
      from,
      to: p.node.id,
      path: `M ${startX} ${parent.y} C ${midX} ${parent.y}, ${midX} ${p.y}, ${p.x} ${p.y}`,
    });
  }
  out.width = margin * 2 + maxCol * colWidth + nodeWidth;
  out.height = margin * 2 + Math.max(0, nextRow - 1) * rowHeight + nodeHeight;
  return out;
}

function frame(node: NodeView, col: number, kids: Map<NodeId | null, NodeView[]>): Frame {
  return { node, col, kids: kids.get(node.id) ?? [], next: 0, first: NaN, last: NaN };
}

/** The roots of all trees, for choosing which tree to map. */
export function roots(nodes: NodeView[]): NodeView[] {
  return childrenOf(nodes).get(null) ?? [];
}
