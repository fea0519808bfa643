import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'
import tailwindcss from '@tailwindcss/vite'

// `npm run dev` serves the dashboard on :5173 and forwards the API and the WebSocket to a local
// `ironhost serve` (or `ironhost start`) on :7400. `npm run build` writes dist/, which the host
// embeds in its binary.
export default defineConfig({
  plugins: [vue(), tailwindcss()],
  build: { outDir: 'dist', emptyOutDir: true, assetsInlineLimit: 0, chunkSizeWarningLimit: 400 },
  server: {
    proxy: {
      '/api': 'http://127.0.0.1:7400',
      '/ws': { target: 'ws://127.0.0.1:7400', ws: true },
    },
  },
})
