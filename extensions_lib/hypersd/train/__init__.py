"""The Train tab's core: job controller, log progress, loss plot, data preview, disk estimate, form."""
