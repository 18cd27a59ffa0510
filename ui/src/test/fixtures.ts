// Plain values shaped like the backend's answers, for tests.
import type {
  HostStatus,
  LiveState,
  ModelInfo,
  NodeView,
  Reply,
  GenerateParams,
  ThawReport,
} from "../lib/api";

export function node(over: Partial<NodeView> = {}): NodeView {
  const id = over.id ?? 1;
  return {
    id,
    parent: null,
    name: `node ${id}`,
    kind: "chat",
    notes: "",
    preview: "",
    tags: [],
    pinned: false,
    token_count: 1234,
    own_bytes: 2_400_000,
    model_name: "TinyLlama-1.1B-Chat",
    model_path: "/models/tinyllama.gguf",
    model_fingerprint: "3f2a9c0d11e4b7a8c2d5e6f7a8b9c0d1",
    compatible: true,
    created_at: 1_700_000_000 + id,
    updated_at: 1_700_000_000 + id,
    depth: 0,
    ...over,
  };
}

export function model(over: Partial<ModelInfo> = {}): ModelInfo {
  return {
    name: "TinyLlama-1.1B-Chat",
    path: "/models/tinyllama.gguf",
    format: "gguf",
    weight_type: "Q4_K_M",
    bytes: 668_788_096,
    device: "CPU",
    kernels: "avx512",
    n_layer: 22,
    vocab_size: 32000,
    context_length: 2048,
    fingerprint: "3f2a9c0d11e4b7a8",
    has_chat_template: true,
    ...over,
  };
}

export function params(over: Partial<GenerateParams> = {}): GenerateParams {
  return {
    temperature: 0.8,
    top_p: 0.95,
    top_k: 40,
    min_p: 0.05,
    repeat_penalty: 1.1,
    repeat_last_n: 64,
    max_tokens: 256,
    stop_strings: [],
    chunk: 512,
    seed: 42,
    ...over,
  };
}

export function live(over: Partial<LiveState> = {}): LiveState {
  return {
    node: null,
    kind: "chat",
    dirty: false,
    token_count: 0,
    context_length: 2048,
    transcript: { mode: "chat", messages: [] },
    ...over,
  };
}

export function hostStatus(over: Partial<HostStatus> = {}): HostStatus {
  return { model: model(), live: live(), params: params(), busy: false, ...over };
}

export function thawReport(over: Partial<ThawReport> = {}): ThawReport {
  return {
    node: 1,
    millis: 12,
    reused_tokens: 1234,
    reprocessed_tokens: 0,
    from_memory: true,
    live: live({ node: over.node ?? 1, token_count: 1234 }),
    ...over,
  };
}

export function reply(over: Partial<Reply> = {}): Reply {
  return {
    text: "",
    tokens: 0,
    finish: "stop_token",
    prefill_ms: 5,
    decode_ms: 50,
    prompt_tokens: 12,
    live: live(),
    ...over,
  };
}
