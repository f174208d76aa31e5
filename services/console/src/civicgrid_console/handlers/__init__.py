"""What each page does with the services' APIs: read what it shows, send what the person asked.
Pages (entrypoints/pages) stay thin: guard, call one of these, render."""
