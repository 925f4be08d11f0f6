// The gateway's API docs page (/api/docs/): Swagger UI over /api/openapi.json. A file of its
// own, not an inline script, so that the page's Content-Security-Policy allows only 'self'.
window.ui = SwaggerUIBundle({
  url: document.getElementById("swagger-ui").dataset.openapiUrl,
  dom_id: "#swagger-ui",
  deepLinking: true,
  displayRequestDuration: true,
  // The token typed into "Authorize" stays in this page's memory, never in localStorage.
  persistAuthorization: false,
  // Left on, Swagger UI sends the document to validator.swagger.io for its badge.
  validatorUrl: null,
  layout: "BaseLayout",
});
