"""The contact center: agents, menus (queues), outbound numbers, CRM contacts, end users and its calls."""
