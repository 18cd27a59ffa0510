// Which dialog, popover and side panel are open. Kept apart from the backend-facing state.
import type { ForkPoint, NodeId } from "./api";

export type Dialog =
  | { kind: "freeze" }
  | { kind: "fork"; node: NodeId; at: ForkPoint | null }
  | { kind: "new-live"; live: "chat" | "story" }
  | { kind: "delete"; node: NodeId }
  | { kind: "export"; node: NodeId }
  | { kind: "import" }
  | { kind: "unfrozen"; node: NodeId };

export type Inspector = "node" | "model";

export class Ui {
  dialog = $state<Dialog | null>(null);
  inspector = $state<Inspector>("node");
  /** In the narrow layout (1,100 px wide or less) the inspector is a drawer, open or not. */
  drawer = $state(false);
  helpOpen = $state(false);

  open(dialog: Dialog): void {
    this.dialog = dialog;
    this.helpOpen = false;
  }

  close(): void {
    this.dialog = null;
  }
}
