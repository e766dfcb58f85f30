"""The web workbench shell 工作台: templates, i18n, cookie sessions, static files."""
