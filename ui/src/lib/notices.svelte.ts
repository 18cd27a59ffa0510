// Toasts: errors stay until dismissed, information fades on its own.
import { toApiError } from "./api";

export type Notice = { id: number; tone: "error" | "info"; message: string };

export class Notices {
  items = $state<Notice[]>([]);
  #next = 1;

  /** Shows any failure as its user-readable message. */
  error(e: unknown): void {
    this.#push("error", toApiError(e).message, 0);
  }

  info(message: string, timeoutMs = 4000): void {
    this.#push("info", message, timeoutMs);
  }

  dismiss(id: number): void {
    this.items = this.items.filter((n) => n.id !== id);
  }

  #push(tone: Notice["tone"], message: string, timeoutMs: number): void {
    // The same message twice in a row is one notice, not a stack of them.
    const existing = this.items.find((n) => n.message === message && n.tone === tone);
    if (existing) return;
    const id = this.#next++;
    this.items = [...this.items, { id, tone, message }].slice(-4);
    if (timeoutMs > 0) setTimeout(() => this.dismiss(id), timeoutMs);
  }
}
