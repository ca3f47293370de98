from pg_lab.train import main

main()
