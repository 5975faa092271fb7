import { defineConfig } from "vite";
import { svelte } from "@sveltejs/vite-plugin-svelte";
import { fileURLToPath } from "node:url";

const here = (path: string) => fileURLToPath(new URL(path, import.meta.url));
// The server the dev server forwards the API to (`vite dev`); the built apps are
// served by boardsync itself at /app/.
const server = process.env.BOARDSYNC_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  base: "/app/",
  plugins: [svelte()],
  resolve: {
    alias: {
      "@boardsync/client": here("../clients/typescript/src/index.ts"),
    },
  },
  server: {
    port: 5173,
    host: "127.0.0.1",
    fs: { allow: [here("..")] },
    proxy: {
      "/api": { target: server, ws: true, changeOrigin: true },
      "/health": { target: server, changeOrigin: true },
      "/metrics": { target: server, changeOrigin: true },
    },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    rolldownOptions: {
      input: {
        index: here("index.html"),
        chat: here("chat.html"),
        kanban: here("kanban.html"),
        whiteboard: here("whiteboard.html"),
        poll: here("poll.html"),
        console: here("console.html"),
      },
    },
  },
});
