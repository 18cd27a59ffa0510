// The engine as the UI sees it: the model, the live state, sampling, and what is running now.
// Every backend failure ends as a notice; actions return null when they did not happen.
import { thawSummary } from "../features/status/thaw-summary";
import { incompatibleReason } from "../features/library/tree";
import {
  api,
  toApiError,
  type ApiError,
  type ForkPoint,
  type LiveState,
  type ModelInfo,
  type NodeId,
  type NodeKind,
  type NodeView,
  type Reply,
  type GenerateParams,
} from "./api";
import { formatMillis, formatTokens } from "./format";
import type { GenProgress } from "./stream";
import type { Library } from "./library.svelte";
import type { Notices } from "./notices.svelte";

export type Backend = "connecting" | "ready" | "unavailable";
export type View = "chat" | "story" | "document" | "graph";

/** The centre view that shows a live state of this kind. */
export function viewFor(kind: NodeKind): View {
  return kind === "story" ? "story" : kind === "document" ? "document" : "chat";
}

export class Session {
  backend = $state<Backend>("connecting");
  /** Why the backend is unavailable; the code tells a missing bridge from a failing backend. */
  backendError = $state<ApiError | null>(null);
  model = $state<ModelInfo | null>(null);
  live = $state<LiveState | null>(null);
  params = $state<GenerateParams | null>(null);
  /** The OpenAI-compatible address this app serves its library at, or null. */
  serving = $state<string | null>(null);
  /** A generation or document run is in flight; Stop applies to it. */
  busy = $state(false);
  /** What is running, in words ("Generating…"), shown in the status bar. */
  activity = $state("");
  /** The generation running now (chat or story), for the context meter; null otherwise. */
  growing = $state<GenProgress | null>(null);
  /** How fast each reply of the live chat was generated this session, by message index. */
  speeds = $state<Record<number, string>>({});
  /** The last thing that happened worth reporting (a thaw, a finished reply). */
  report = $state("");
  view = $state<View>("chat");

  readonly library: Library;
  readonly notices: Notices;

  constructor(library: Library, notices: Notices) {
    this.library = library;
    this.notices = notices;
  }

  get currentNode(): NodeView | undefined {
    return this.library.byId(this.live?.node);
  }

  async init(): Promise<void> {
    this.backend = "connecting";
    try {
      const status = await api.status();
      this.model = status.model;
      this.live = status.live;
      this.params = status.params;
      this.busy = status.busy;
      this.view = viewFor(status.live.kind);
      this.backend = "ready";
      this.backendError = null;
      await this.library.refresh();
    } catch (e) {
      this.backend = "unavailable";
      this.backendError = toApiError(e);
    }
  }

  /** Re-reads the live state after commands that change it without returning it. */
  async refreshStatus(): Promise<void> {
    try {
      const status = await api.status();
      this.model = status.model;
      this.live = status.live;
      this.params = status.params;
    } catch (e) {
      this.notices.error(e);
    }
  }

  /** Runs a long call with `busy` set, turning failure into a notice and `null`. */
  async run<T>(activity: string, call: () => Promise<T>): Promise<T | null> {
    this.busy = true;
    this.activity = activity;
    this.growing = null;
    try {
      return await call();
    } catch (e) {
      this.notices.error(e);
      return null;
    } finally {
      this.busy = false;
      this.activity = "";
      this.growing = null;
    }
  }

  /** A quick call: failure becomes a notice and `null`. */
  async #call<T>(call: () => Promise<T>): Promise<T | null> {
    try {
      return await call();
    } catch (e) {
      this.notices.error(e);
      return null;
    }
  }

  async thaw(id: NodeId): Promise<boolean> {
    const node = this.library.byId(id);
    this.library.selected = id;
    if (node && !node.compatible) {
      this.notices.info(incompatibleReason(node, this.model?.name ?? null), 8000);
      return false;
    }
    const report = await this.#call(() => api.thaw(id));
    if (!report) return false;
    this.live = report.live;
    this.speeds = {};
    this.report = thawSummary(report, node?.name ?? `node ${id}`);
    if (this.view !== "graph") this.view = viewFor(report.live.kind);
    return true;
  }

  async startLive(kind: NodeKind, system: string | null): Promise<boolean> {
    const live = await this.#call(() => api.startLive(kind, system));
    if (!live) return false;
    this.live = live;
    this.speeds = {};
    this.view = viewFor(kind);
    this.report = kind === "story" ? "new story" : "new chat";
    return true;
  }

  async freeze(name: string, kind: NodeKind): Promise<NodeView | null> {
    const node = await this.#call(() => api.freeze(name, kind));
    if (!node) return null;
    this.library.put(node);
    this.library.selected = node.id;
    this.report = `froze ${node.name} · ${formatTokens(node.token_count)}`;
    await Promise.all([this.library.refresh(), this.refreshStatus()]);
    return node;
  }

  async fork(node: NodeId, at: ForkPoint | null, name: string): Promise<boolean> {
    const report = await this.#call(() => api.fork(node, at, name));
    if (!report) return false;
    this.live = report.live;
    this.speeds = {};
    this.report = thawSummary(report, name, "forked");
    await this.library.refresh();
    this.library.selected = report.node;
    if (this.view !== "graph") this.view = viewFor(report.live.kind);
    return true;
  }

  async stop(): Promise<void> {
    await this.#call(() => api.stop());
  }

  async continueFromAnswer(): Promise<boolean> {
    const live = await this.#call(() => api.continueFromAnswer());
    if (!live) return false;
    this.live = live;
    this.speeds = {};
    this.view = viewFor(live.kind);
    this.report = "continuing from the answer";
    return true;
  }

  async openModel(path: string): Promise<ModelInfo | null> {
    const model = await this.run("Opening model…", () =>
      api.openModel(path, (p) => {
        // Bytes of weights read: a multi-gigabyte model is seconds of loading, not a silent wait.
        if (p.total_bytes > 0) this.activity = `Opening model… ${loadLabel(p.done_bytes, p.total_bytes)}`;
      }),
    );
    if (!model) return null;
    this.model = model;
    this.report = `opened ${model.name} on ${model.device}`;
    // Compatibility of every node depends on the model.
    await Promise.all([this.refreshStatus(), this.library.refresh()]);
    return model;
  }

  async saveParams(params: GenerateParams): Promise<GenerateParams | null> {
    const saved = await this.#call(() => api.setParams(params));
    if (saved) {
      this.params = saved;
      this.notices.info("Sampling settings saved.");
    }
    return saved;
  }

  /** Serves (or stops serving) this library to other tools over the OpenAI API on loopback. */
  async setServing(enabled: boolean, port: number): Promise<string | null | undefined> {
    const status = await this.#call(() => api.setServing(enabled, port));
    if (!status) return undefined;
    this.serving = status.url;
    if (status.url) this.notices.info(`Other tools can now use this library at ${status.url}`);
    return status.url;
  }

  /** Takes in a finished reply: the new live state and a word on how it ended. */
  settle(reply: Reply): void {
    this.live = reply.live;
    const t = reply.live.transcript;
    if (t.mode === "chat" && t.messages.length > 0 && reply.tokens > 0) {
      const secs = (reply.decode_ms ?? 0) / 1000;
      const rate = secs > 0 ? ` · ${(reply.tokens / secs).toFixed(1)} tok/s` : "";
      this.speeds = { ...this.speeds, [t.messages.length - 1]: `${formatTokens(reply.tokens)}${rate}` };
    }
    const timing = `${formatTokens(reply.tokens)} in ${formatMillis((reply.prefill_ms ?? 0) + (reply.decode_ms ?? 0))}`;
    switch (reply.finish) {
      case "cancelled":
        this.report = `stopped after ${timing}`;
        break;
      case "context_full":
        this.report = `context full after ${timing}`;
        this.notices.info(
          `The context is full (${reply.live.context_length} tokens). Freeze, then fork from an earlier point to go on.`,
          10000,
        );
        break;
      case "length":
        this.report = `reached the token limit · ${timing}`;
        break;
      default:
        this.report = `generated ${timing}`;
    }
  }
}

/** `1.2 of 4.9 GB (24%)`. */
export function loadLabel(done: number, total: number): string {
  const gb = (b: number) => (b / 1e9).toFixed(1);
  return `${gb(done)} of ${gb(total)} GB (${Math.floor((done * 100) / total)}%)`;
}
