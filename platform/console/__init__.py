"""The web console's own pages (dashboard, playground), served inside the admin site."""
