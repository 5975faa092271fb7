// Placeholder: the admin console is written by another helper and replaces this file.
import "../lib/styles.css";

const app = document.getElementById("app")!;
app.innerHTML = `<div style="padding:32px"><h1>Admin console</h1><p class="muted">Not built yet.</p>
  <p><a href="${import.meta.env.BASE_URL}index.html">Back to the demos</a></p></div>`;
