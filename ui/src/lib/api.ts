// The one door to the backend for UI code: unwraps the generated `Result`s into values or thrown
// `ApiFailure`s, and turns streaming callbacks into Tauri channels. Nothing else imports bindings.ts.
import { Channel } from "@tauri-apps/api/core";
import {
  commands,
  type AltEvent,
  type ApiError,
  type DeleteMode,
  type ForkPoint,
  type GenEvent,
  type NodeKind,
  type GenerateParams,
  type LoadProgress,
  type PullProgress,
} from "./bindings";

export type * from "./bindings";

/** Node ids are plain numbers on the wire. */
export type NodeId = number;

/** What every generated command resolves to. */
export type Result<T, E> = { status: "ok"; data: T } | { status: "error"; error: E };

/** A failed backend call, always carrying a user-readable message. */
export class ApiFailure extends Error {
  readonly code: string;
  constructor(error: ApiError) {
    super(error.message);
    this.name = "ApiFailure";
    this.code = error.code;
  }
  get error(): ApiError {
    return { code: this.code, message: this.message };
  }
}

export const BACKEND_UNAVAILABLE = "backend_unavailable";

/** True inside the Tauri webview (its IPC bridge is installed before any script runs). */
export function backendPresent(): boolean {
  return typeof window !== "undefined" && "__TAURI_INTERNALS__" in window;
}

/**
 * Whatever a call rejected with, as an ApiError. The backend sends `{ code, message }`, but Tauri
 * itself rejects with a plain string (e.g. an unknown command) and a missing bridge throws a
 * TypeError; none of them may reach the user as raw JSON.
 */
export function toApiError(e: unknown): ApiError {
  if (e instanceof ApiFailure) return e.error;
  if (e instanceof Error) {
    if (!backendPresent()) {
      return {
        code: BACKEND_UNAVAILABLE,
        message: "The Freeze-Attn backend is not available. Start the desktop app to use the model.",
      };
    }
    return { code: "ipc", message: e.message || "The call to the backend failed." };
  }
  if (typeof e === "string") return { code: "backend", message: e };
  if (e && typeof e === "object" && typeof (e as { message?: unknown }).message === "string") {
    const { code, message } = e as { code?: unknown; message: string };
    return { code: typeof code === "string" ? code : "backend", message };
  }
  return { code: "unknown", message: "The backend answered with an unexpected error." };
}

/** Resolves to the `ok` value; rejects with an ApiFailure for errors of every kind. */
export async function unwrap<T>(call: () => Promise<Result<T, ApiError>>): Promise<T> {
  let result: Result<T, ApiError>;
  try {
    result = await call();
  } catch (e) {
    throw new ApiFailure(toApiError(e));
  }
  if (result.status === "ok") return result.data;
  throw new ApiFailure(toApiError(result.error));
}

function channel<T>(onEvent: (event: T) => void): Channel<T> {
  const ch = new Channel<T>();
  ch.onmessage = onEvent;
  return ch;
}

type OnGen = (event: GenEvent) => void;
type OnAlt = (event: AltEvent) => void;

export const api = {
  status: () => unwrap(() => commands.status()),
  openModel: (path: string, onProgress: (p: LoadProgress) => void = () => {}) =>
    unwrap(() => commands.openModel(path, channel(onProgress))),
  listTree: () => unwrap(() => commands.listTree()),
  search: (query: string) => unwrap(() => commands.search(query)),
  startLive: (kind: NodeKind, system: string | null) =>
    unwrap(() => commands.startLive(kind, system)),
  thaw: (node: NodeId) => unwrap(() => commands.thaw(node)),
  chatSend: (message: string, params: GenerateParams, onEvent: OnGen) =>
    unwrap(() => commands.chatSend(message, params, channel(onEvent))),
  continueReply: (params: GenerateParams, onEvent: OnGen) =>
    unwrap(() => commands.continueReply(params, channel(onEvent))),
  continueText: (text: string, params: GenerateParams, onEvent: OnGen) =>
    unwrap(() => commands.continueText(text, params, channel(onEvent))),
  storyAlternatives: (n: number, params: GenerateParams, onEvent: OnAlt) =>
    unwrap(() => commands.storyAlternatives(n, params, channel(onEvent))),
  keepAlternative: (index: number, name: string, keepOthers: boolean) =>
    unwrap(() => commands.keepAlternative(index, name, keepOthers)),
  freeze: (name: string, kind: NodeKind) => unwrap(() => commands.freeze(name, kind)),
  fork: (node: NodeId, at: ForkPoint | null, name: string) =>
    unwrap(() => commands.fork(node, at, name)),
  processDocument: (path: string, name: string, onEvent: OnGen) =>
    unwrap(() => commands.processDocument(path, name, channel(onEvent))),
  ask: (node: NodeId, question: string, params: GenerateParams, onEvent: OnGen) =>
    unwrap(() => commands.ask(node, question, params, channel(onEvent))),
  documentQuestions: (node: NodeId) => unwrap(() => commands.documentQuestions(node)),
  continueFromAnswer: () => unwrap(() => commands.continueFromAnswer()),
  stop: () => unwrap(() => commands.stop()),
  renameNode: (node: NodeId, name: string) => unwrap(() => commands.renameNode(node, name)),
  setNotes: (node: NodeId, notes: string) => unwrap(() => commands.setNotes(node, notes)),
  addTag: (node: NodeId, tag: string) => unwrap(() => commands.addTag(node, tag)),
  removeTag: (node: NodeId, tag: string) => unwrap(() => commands.removeTag(node, tag)),
  setPinned: (node: NodeId, pinned: boolean) => unwrap(() => commands.setPinned(node, pinned)),
  moveNode: (node: NodeId, parent: NodeId | null) =>
    unwrap(() => commands.moveNode(node, parent)),
  previewDelete: (node: NodeId, mode: DeleteMode) =>
    unwrap(() => commands.previewDelete(node, mode)),
  deleteNode: (node: NodeId, mode: DeleteMode) => unwrap(() => commands.deleteNode(node, mode)),
  exportNode: (node: NodeId, path: string) => unwrap(() => commands.exportNode(node, path)),
  exportMarkdown: (node: NodeId, path: string) => unwrap(() => commands.exportMarkdown(node, path)),
  importBundle: (path: string, parent: NodeId | null, name: string | null) =>
    unwrap(() => commands.importBundle(path, parent, name)),
  setParams: (params: GenerateParams) => unwrap(() => commands.setParams(params)),
  setServing: (enabled: boolean, port: number) => unwrap(() => commands.setServing(enabled, port)),
  serving: () => unwrap(() => commands.serving()),
  installedModels: () => unwrap(() => commands.installedModels()),
  openedModels: () => unwrap(() => commands.openedModels()),
  modelCatalogue: (context: number) => unwrap(() => commands.modelCatalogue(context)),
  pullModel: (name: string, onProgress: (p: PullProgress) => void, trustHub = false) =>
    unwrap(() => commands.pullModel(name, trustHub, channel(onProgress))),
  cancelPull: () => unwrap(() => commands.cancelPull()),
};

export type Api = typeof api;
