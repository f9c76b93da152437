"""`animatediff ui`: a local web app over the library: a models catalog (`catalog`), the form's settings
(`settings`), a queue of jobs (`jobs`), the state one server holds (`studio`) and its HTTP server and page
(`server`, `page.html`)."""
