// Loom-style map of one tree: depth runs left to right, each leaf gets its own row, and a parent
// sits level with the middle of its children. Deterministic, so the map does not jump between
// refreshes.
import type { NodeId, NodeView } from "../../lib/api";
import { childrenOf } from "../library/tree";

export type Placed = { node: NodeView; x: number; y: number; col: number; row: number };
export type Edge = { from: NodeId; to: NodeId; path: string };
export type GraphLayout = { placed: Placed[]; edges: Edge[]; width: number; height: number };

/** `x` of a placed node is its left edge, `y` its vertical middle; edges run right edge to left edge. */
export type Spacing = { colWidth: number; rowHeight: number; margin: number; nodeWidth: number };
export const SPACING: Spacing = { colWidth: 216, rowHeight: 52, margin: 24, nodeWidth: 168 };

export function layoutTree(nodes: NodeView[], rootId: NodeId, spacing: Spacing = SPACING): GraphLayout {
  const kids = childrenOf(nodes);
  const root = nodes.find((n) => n.id === rootId);
  if (!root) return { placed: [], edges: [], width: 0, height: 0 };

  const rows = new Map<NodeId, number>();
  const cols = new Map<NodeId, number>();
  const seen = new Set<NodeId>();
  let nextRow = 0;

  // Post-order: leaves take the next free row, parents the midpoint of their first and last child.
  const place = (n: NodeView, col: number): number => {
    seen.add(n.id);
    cols.set(n.id, col);
    const children = (kids.get(n.id) ?? []).filter((c) => !seen.has(c.id));
    let row: number;
    if (children.length === 0) {
      row = nextRow++;
    } else {
      const childRows = children.map((c) => place(c, col + 1));
      row = (childRows[0] + childRows[childRows.length - 1]) / 2;
    }
    rows.set(n.id, row);
    return row;
  };
  place(root, 0);

  const byId = new Map(nodes.map((n) => [n.id, n]));
  const { colWidth, rowHeight, margin, nodeWidth } = spacing;
  const placed: Placed[] = [...rows.keys()].map((id) => {
    const col = cols.get(id)!;
    const row = rows.get(id)!;
    return { node: byId.get(id)!, col, row, x: margin + col * colWidth, y: margin + row * rowHeight };
  });
  const at = new Map(placed.map((p) => [p.node.id, p]));

  const edges: Edge[] = [];
  for (const p of placed) {
    if (p.node.id === rootId || p.node.parent === null) continue;
    const parent = at.get(p.node.parent);
    if (!parent) continue;
    const startX = parent.x + nodeWidth;
    const midX = (startX + p.x) / 2;
    edges.push({
      from: parent.node.id,
      to: p.node.id,
      path: `M ${startX} ${parent.y} C ${midX} ${parent.y}, ${midX} ${p.y}, ${p.x} ${p.y}`,
    });
  }

  const maxCol = Math.max(...placed.map((p) => p.col));
  return {
    placed,
    edges,
    width: margin * 2 + maxCol * colWidth + nodeWidth,
    height: margin * 2 + Math.max(0, nextRow - 1) * rowHeight,
  };
}

/** The roots of all trees, for choosing which tree to map. */
export function roots(nodes: NodeView[]): NodeView[] {
  return childrenOf(nodes).get(null) ?? [];
}
