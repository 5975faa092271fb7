/** Short messages at the bottom of the page: refused commands, failed requests. */
import { describeError } from "./api";

export interface Toast {
  id: number;
  kind: "error" | "info";
  text: string;
}

let next = 1;

class Toasts {
  list = $state<Toast[]>([]);

  push(kind: Toast["kind"], text: string, ms = 6000) {
    const id = next++;
    this.list = [...this.list, { id, kind, text }];
    setTimeout(() => this.dismiss(id), ms);
  }

  error(err: unknown, prefix?: string) {
    const text = describeError(err);
    this.push("error", prefix ? `${prefix}: ${text}` : text);
  }

  info(text: string) {
    this.push("info", text, 3500);
  }

  dismiss(id: number) {
    this.list = this.list.filter((t) => t.id !== id);
  }
}

export const toasts = new Toasts();
