// The catalogue of nodes as the UI holds it: the tree, its filters, the selection, and the
// operations that edit nodes. Failures become notices; callers get `null`/`false` back.
import { SvelteSet } from "svelte/reactivity";
import {
  allTags,
  filterNodes,
  isFiltering,
  noFilter,
  orderTree,
  visibleRows,
  type TreeFilter,
} from "../features/library/tree";
import { api, type DeleteMode, type DeleteReport, type NodeId, type NodeView } from "./api";
import type { Notices } from "./notices.svelte";

export class Library {
  nodes = $state<NodeView[]>([]);
  filter = $state<TreeFilter>(noFilter());
  /** Ids that `search` returned for the filter text; null while there is no text. */
  hits = $state<ReadonlySet<NodeId> | null>(null);
  collapsed = new SvelteSet<NodeId>();
  /** The node shown in the details panel. */
  selected = $state<NodeId | null>(null);

  ordered = $derived(orderTree(this.nodes));
  filtering = $derived(isFiltering(this.filter));
  rows = $derived(
    this.filtering
      ? filterNodes(this.ordered, this.filter, this.hits)
      : visibleRows(this.ordered, this.collapsed),
  );
  tags = $derived(allTags(this.nodes));

  #searchSeq = 0;
  #notices: Notices;

  constructor(notices: Notices) {
    this.#notices = notices;
  }

  byId(id: NodeId | null | undefined): NodeView | undefined {
    return id === null || id === undefined ? undefined : this.nodes.find((n) => n.id === id);
  }

  async refresh(): Promise<void> {
    try {
      this.nodes = await api.listTree();
      if (this.filter.text.trim()) await this.#runSearch(this.filter.text);
    } catch (e) {
      this.#notices.error(e);
    }
  }

  setFilter(patch: Partial<TreeFilter>): void {
    const textChanged = patch.text !== undefined && patch.text !== this.filter.text;
    this.filter = { ...this.filter, ...patch };
    if (textChanged) void this.#runSearch(this.filter.text);
  }

  clearFilter(): void {
    this.filter = noFilter();
    this.hits = null;
  }

  toggle(id: NodeId): void {
    if (this.collapsed.has(id)) this.collapsed.delete(id);
    else this.collapsed.add(id);
  }

  async #runSearch(text: string): Promise<void> {
    const seq = ++this.#searchSeq;
    const query = text.trim();
    if (!query) {
      this.hits = null;
      return;
    }
    try {
      const found = await api.search(query);
      // A slower answer to an older query must not overwrite a newer one.
      if (seq === this.#searchSeq) this.hits = new Set(found.map((n) => n.id));
    } catch (e) {
      if (seq === this.#searchSeq) this.#notices.error(e);
    }
  }

  /** Puts a changed node in place without reloading the whole tree. */
  put(node: NodeView): void {
    const i = this.nodes.findIndex((n) => n.id === node.id);
    this.nodes = i < 0 ? [...this.nodes, node] : this.nodes.map((n) => (n.id === node.id ? node : n));
  }

  async #edit(call: () => Promise<NodeView>): Promise<NodeView | null> {
    try {
      const node = await call();
      this.put(node);
      return node;
    } catch (e) {
      this.#notices.error(e);
      return null;
    }
  }

  rename(id: NodeId, name: string) {
    return this.#edit(() => api.renameNode(id, name));
  }
  setNotes(id: NodeId, notes: string) {
    return this.#edit(() => api.setNotes(id, notes));
  }
  addTag(id: NodeId, tag: string) {
    return this.#edit(() => api.addTag(id, tag));
  }
  removeTag(id: NodeId, tag: string) {
    return this.#edit(() => api.removeTag(id, tag));
  }
  setPinned(id: NodeId, pinned: boolean) {
    return this.#edit(() => api.setPinned(id, pinned));
  }

  async move(id: NodeId, parent: NodeId | null): Promise<NodeView | null> {
    const node = await this.#edit(() => api.moveNode(id, parent));
    if (node) await this.refresh(); // depths below the moved node changed
    return node;
  }

  async previewDelete(id: NodeId, mode: DeleteMode): Promise<DeleteReport | null> {
    try {
      return await api.previewDelete(id, mode);
    } catch (e) {
      this.#notices.error(e);
      return null;
    }
  }

  async delete(id: NodeId, mode: DeleteMode): Promise<DeleteReport | null> {
    try {
      const report = await api.deleteNode(id, mode);
      if (this.selected === id) this.selected = null;
      await this.refresh();
      return report;
    } catch (e) {
      this.#notices.error(e);
      return null;
    }
  }
}
