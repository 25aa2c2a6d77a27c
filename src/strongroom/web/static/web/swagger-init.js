// Starts Swagger UI on /docs (src/strongroom/web/api_docs.py) from this origin's files only: the
// bundle is vendored under /static/web/swagger-ui/ (swagger-ui-dist, Apache-2.0, licence beside
// it), this script is a file and not inline, so the page's CSP allows scripts from 'self' only.
window.addEventListener('DOMContentLoaded', () => {
  const root = document.getElementById('swagger-ui');
  window.ui = window.SwaggerUIBundle({
    url: root.dataset.openapi,
    dom_id: '#swagger-ui',
    deepLinking: true,
    validatorUrl: null, // no call to a public validator
    presets: [window.SwaggerUIBundle.presets.apis],
    layout: 'BaseLayout',
  });
});
